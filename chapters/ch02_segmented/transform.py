# Exercise copy of solutions/ch02_segmented/transform.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Segment 3, transform: raw readings to daily summaries, without the API.

Input: `fetched` and `raw:<station>`. Output: `summaries` (a hash, station ->
summary JSON) and `transformed`. The summary itself is chapter 1's `summarise`:
segmenting changes where the data lives, not what we compute.
"""
from __future__ import annotations

import json

from ch01_periodic.summary import summarise
from workshop import progress

from . import keys, stages
from .app import app
from .batches import fan_out
from workshop.celery_app import redis_client

BATCH = 50   # no API here: batches only bound a task's size


@app.task
def run_segment(day: str | None = None) -> dict:
    """Entry task: one transform_batch per batch of fetched stations; {stations, batches}."""
    r, k = redis_client(), keys.for_day(day)
    return fan_out(r, k.progress("transform"), transform_batch, stages.members(r, k.fetched), BATCH, k.day)


@app.task
def transform_batch(batch: list[str], day: str) -> dict:
    """Summarise one batch and move it fetched -> transformed."""
    r, k = redis_client(), keys.Keys(day)
    raws = r.mget([k.raw(station) for station in batch])
    expired = [station for station, raw in zip(batch, raws) if raw is None]
    # exercise 2.2: in ONE transaction, the summary (JSON) of every station whose raw readings are still there is in k.summaries and the station moved fetched -> transformed; a station whose readings expired goes back fetched -> pending
    raise NotImplementedError("exercise 2.2: in ONE transaction, the summary (JSON) of every station whose raw readings are still there is in k.summaries and the station moved fetched -> transformed; a station whose readings expired goes back fetched -> pending")
    progress.advance(r, k.progress("transform"), done=len(batch) - len(expired), failed=len(expired))
    return {"day": day, "done": len(batch) - len(expired), "failed": len(expired)}
