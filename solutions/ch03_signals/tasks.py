"""The loop's steps: chapter 2's batch logic, unchanged, as this app's tasks.

Each step takes (batch, day, ...) and reads and writes chapter 2's keys. The
only thing added is that a failed fetch is *loud*: chapter 2's fetch_batch
records the failure (the stations stay in `pending`, the reason in
`fetch:errors`) and returns normally; here the step then raises BatchFailed, so
the failure reaches Celery's `task_failure` signal, and with it the error log
and the loop (which goes on, see loop.py). The stations are safely back in
pending before it raises: raising loses nothing.

Each step first keeps only the stations still waiting for it: a message that
runs again (its worker died after the work, before the acknowledgement) finds
its stations moved on and does nothing twice.

The bodies are plain functions (fetch, transform, persist) so another app can
register them as its own tasks (chapter 4 does, to swap in its own fetch).
"""
from __future__ import annotations

from ch02_segmented import fetch as fetch_segment, keys, persist as persist_segment, stages
from ch02_segmented import transform as transform_segment
from workshop.celery_app import redis_client

from .app import app


class BatchFailed(Exception):
    """A batch's API call failed; its stations are still pending and will be fetched again."""


def still_in(source: str, batch: list[str]) -> list[str]:
    """The stations of `batch` still in the stage `source`, in order."""
    return stages.holding(redis_client(), source, batch)


def nothing_left(day: str) -> dict:
    """The outcome of a batch whose stations had all moved on already."""
    return {"day": day, "done": 0, "failed": 0}


def fetch(batch: list[str], day: str) -> dict:
    """Fetch one batch with chapter 2's logic; raise BatchFailed if it failed (stations stay pending)."""
    batch = still_in(keys.Keys(day).pending, batch)
    if not batch:
        return nothing_left(day)
    outcome = fetch_segment.fetch_batch(batch, day)   # calling a task object runs its body, here
    if outcome["failed"]:
        why = redis_client().hget(keys.Keys(day).fetch_errors, batch[0])
        raise BatchFailed(f"{len(batch)} stations {batch[0]}..{batch[-1]} stay pending: {why}")
    return outcome


def transform(batch: list[str], day: str) -> dict:
    """Chapter 2's transform; a station whose raw readings expired goes back to pending, not lost."""
    batch = still_in(keys.Keys(day).fetched, batch)
    return transform_segment.transform_batch(batch, day) if batch else nothing_left(day)


def persist(batch: list[str], day: str, db: str | None = None) -> dict:
    """Chapter 2's persist. A station without a summary goes back to transform, so the loop cannot spin on it."""
    batch = still_in(keys.Keys(day).transformed, batch)
    if not batch:
        return nothing_left(day)
    outcome = persist_segment.persist_batch(batch, day, db=db)
    if outcome["failed"]:
        r, k = redis_client(), keys.Keys(day)
        stages.move(r, k.transformed, k.fetched,
                    [station for station, summary in zip(batch, r.hmget(k.summaries, batch)) if summary is None])
    return outcome


# `throws`: BatchFailed is an expected outcome: the worker logs it in one line, without a
# traceback, and it is still a FAILURE that fires task_failure. No results are stored (the app's
# task_ignore_result): the loop and the history learn everything from signals.
fetch_batch = app.task(fetch, name="ch03_signals.fetch_batch", throws=(BatchFailed,))
transform_batch = app.task(transform, name="ch03_signals.transform_batch")
persist_batch = app.task(persist, name="ch03_signals.persist_batch")

BATCH_TASKS = (fetch_batch, transform_batch, persist_batch)
