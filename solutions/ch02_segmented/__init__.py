"""Chapter 2: the monolith cut into segments.

discover -> fetch -> transform -> persist. Each segment is a small Celery
pipeline with its own entry task (`<segment>.run_segment`); it reads its input
from Redis keys and writes its output to Redis keys (see `keys`), so each one
can run, fail, be re-run and be tested on its own.
"""
