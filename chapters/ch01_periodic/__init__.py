# Exercise copy of solutions/ch01_periodic/__init__.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 1: the monolith on a timer, and its failure modes, measured.

Read it top to bottom: stations_api (the API client), summary (the transform),
keys (what lives in Redis), runs (the run log), pipeline (the one big task),
app (the Celery app and its beat schedule), measure (the figures), demo.
"""
