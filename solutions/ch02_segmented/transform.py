"""Segment 3, transform: raw readings to daily summaries, without the API.

Input: `fetched` and `raw:<station>`. Output: `summaries` (a hash, station ->
summary JSON) and `transformed`. The summary itself is chapter 1's `summarise`:
segmenting changes where the data lives, not what we compute.
"""
from __future__ import annotations

import json

from ch01_periodic.summary import summarise
from workshop import progress

from . import keys
from .app import app
from .batches import fan_out
from workshop.celery_app import redis_client

BATCH = 50   # no API here: batches only bound a task's size


@app.task
def run_segment(day: str | None = None) -> dict:
    """Entry task: one transform_batch per batch of fetched stations; {stations, batches}."""
    r, k = redis_client(), keys.for_day(day)
    return fan_out(r, k.progress("transform"), transform_batch, list(r.smembers(k.fetched)), BATCH, k.day)


@app.task
def transform_batch(batch: list[str], day: str) -> dict:
    """Summarise one batch and move it fetched -> transformed."""
    r, k = redis_client(), keys.Keys(day)
    done = refetch = 0
    raws = r.mget([k.raw(station) for station in batch])
    # >>> exercise 2.2: in ONE MULTI pipeline, per station: no raw (expired)? SMOVE k.fetched -> k.pending, refetch += 1; else HSET k.summaries station json.dumps(summarise(...)), SMOVE k.fetched -> k.transformed, done += 1
    with r.pipeline() as p:   # MULTI/EXEC: summaries written and ids moved together
        for station, raw in zip(batch, raws):
            if raw is None:
                # Its readings expired before transform ran: fetch it again rather than lose it.
                p.smove(k.fetched, k.pending, station)
                refetch += 1
                continue
            summary = summarise(station, day, json.loads(raw))
            p.hset(k.summaries, station, json.dumps(summary))
            p.smove(k.fetched, k.transformed, station)
            done += 1
        p.execute()
    # <<<
    progress.advance(r, k.progress("transform"), done=done, failed=refetch)
    return {"day": day, "done": done, "failed": refetch}
