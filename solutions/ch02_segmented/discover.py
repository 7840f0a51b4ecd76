"""Segment 1, discover: which stations does the run cover?

Input: the API's station listing. Output: `stations` (everything found) and
`pending` (found, and not yet fetched). One small task: the listing is a couple
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
    with r.pipeline() as p:   # MULTI: both stages change together
        if ids:
            stages.add(p, k.stations, ids)
        # Pending is recomputed, not appended to: a station already fetched (or further)
        # is not queued again, so discovering twice leaves the same state.
        p.zdiffstore(k.pending, [k.stations, k.fetched, k.transformed, k.persisted])
        p.execute()
    progress.advance(r, k.progress("discover"), done=len(ids))
    return {"stations": len(ids), "batches": []}   # the same answer as the other entry tasks
