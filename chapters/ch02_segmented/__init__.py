# Exercise copy of solutions/ch02_segmented/__init__.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 2: the monolith cut into segments.

discover -> fetch -> transform -> persist. Each segment is a small Celery
pipeline with its own entry task (`<segment>.run_segment`); it reads its input
from Redis keys and writes its output to Redis keys (see `keys`), so each one
can run, fail, be re-run and be tested on its own.
"""
