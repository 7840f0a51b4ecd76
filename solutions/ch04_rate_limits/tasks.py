"""This app's tasks: chapter 4's fetch, and chapter 3's transform and persist bodies registered here.

The two fetch tasks differ only in the limit: the global limiter, or Celery's
per-worker `rate_limit` (set on every worker at run time with
`app.control.rate_limit`). The loop's own batches and its helpers' (loop.py)
are the same task: a header tells the loop which one ended.
"""
from __future__ import annotations

from celery import Task

from ch03_signals import tasks as ch03_tasks

from . import fetch
from .app import app
from .safety import TASK_TIME_LIMIT

# Retries are counted per station by us (retries.py), not by Celery: no max_retries.
# The soft time limit raises in the task, which retries it as "time limit" (fetch.py); the hard one kills it,
# and the loop's handler (in the worker's main process) records "time limit" for the attempt counted at its receipt
# (deliveries.py, also in the main process).
FETCH_OPTIONS = dict(bind=True, max_retries=None, time_limit=TASK_TIME_LIMIT,
                     soft_time_limit=TASK_TIME_LIMIT - 30)


def fetch_global(self: Task, batch: list[str], day: str) -> dict:
    """One batch, paced by the global limiter."""
    return fetch.fetch(self, batch, day, global_limit=True)


def fetch_per_worker(self: Task, batch: list[str], day: str) -> dict:
    """One batch, paced only by Celery's `rate_limit` of the worker that runs it."""
    return fetch.fetch(self, batch, day, global_limit=False)


def wait_for_leases(batch: list[str], day: str) -> dict:
    """Nothing: a tick that brings the loop back in a moment, while other batches are still in flight."""
    return {"day": day}


fetch_batch = app.task(fetch_global, name="ch04_rate_limits.fetch_batch", **FETCH_OPTIONS)
fetch_batch_per_worker = app.task(fetch_per_worker, name="ch04_rate_limits.fetch_batch_per_worker",
                                  **FETCH_OPTIONS)
transform_batch = app.task(ch03_tasks.transform, name="ch04_rate_limits.transform_batch")
persist_batch = app.task(ch03_tasks.persist, name="ch04_rate_limits.persist_batch")
tick = app.task(wait_for_leases, name="ch04_rate_limits.tick")

BATCH_TASKS = (fetch_batch, fetch_batch_per_worker, transform_batch, persist_batch)
