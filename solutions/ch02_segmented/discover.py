"""Segment 1, discover: which stations does the run cover?

Input: the API's station listing. Output: `stations` (everything found) and
`pending` (found for the first time: to fetch). Safe to run again at any time. One small task: the listing is a couple
of paginated requests, there is nothing to fan out.
"""
from __future__ import annotations

from ch01_periodic.stations_api import list_stations
from workshop import progress

from . import keys, stages
from .app import app
from workshop.celery_app import redis_client


@app.task
def run_segment(day: str | None = None, limit: int | None = None) -> dict:
    """Entry task: list the stations (the first `limit` of them, if given) and queue them for fetch."""
    r, k = redis_client(), keys.for_day(day)
    ids = list_stations()[:limit]
    progress.start(r, k.progress("discover"), len(ids))
    # Only stations not seen before are queued: one already known is wherever the day took it (fetched,
    # in flight, done, given up on) and stays there, so discovering again, at any time, changes nothing.
    stages.add_new(r, k.stations, k.pending, ids)
    progress.advance(r, k.progress("discover"), done=len(ids))
    return {"stations": len(ids), "batches": []}   # the same answer as the other entry tasks
