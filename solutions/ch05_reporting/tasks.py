"""This app's tasks: chapter 4's fetch, paid from the run's budget and screened for quality; chapter 3's
transform and persist bodies registered here.

The fetch is chapter 4's (limiter, leases, retries, dead letters), given another
`call`: the metered call (metered.py) wrapped in the quality screen (quality.py).
So every call is paid for before it goes out, and every batch is checked as it
comes in, before anything is stored.
"""
from __future__ import annotations

from celery import Task

from ch03_signals import tasks as ch03_tasks
from ch04_rate_limits import fetch
from ch04_rate_limits.tasks import FETCH_OPTIONS, wait_for_leases

from . import metered, quality
from .app import app


def fetch_in_run(self: Task, batch: list[str], day: str, run: str | None = None) -> dict:
    """One batch, paced by the global limiter, paid from `run`'s budget, screened for glitches."""
    return fetch.fetch(self, batch, day, call=quality.screening(metered.call_for(run)))


fetch_batch = app.task(fetch_in_run, name="ch05_reporting.fetch_batch", **FETCH_OPTIONS)
transform_batch = app.task(ch03_tasks.transform, name="ch05_reporting.transform_batch")
persist_batch = app.task(ch03_tasks.persist, name="ch05_reporting.persist_batch")
tick = app.task(wait_for_leases, name="ch05_reporting.tick")

BATCH_TASKS = (fetch_batch, transform_batch, persist_batch)
