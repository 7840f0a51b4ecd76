"""Segment 4, persist: the summaries into SQLite, by upsert.

Input: `transformed` and `summaries`. Output: rows in SQLite and `persisted`.
The rows are committed before the ids move: a crash in between leaves the ids
in transformed, the next run writes the same rows again, and the upsert makes
that harmless.
"""
from __future__ import annotations

import json
from contextlib import closing

from workshop import progress

from . import database, keys, stages
from .app import app
from .batches import fan_out
from workshop.celery_app import redis_client

BATCH = 100   # one SQLite transaction per batch


@app.task
def run_segment(day: str | None = None, db: str | None = None) -> dict:
    """Entry task: one persist_batch per batch of transformed stations; {stations, batches}."""
    r, k = redis_client(), keys.for_day(day)
    database.connect(db).close()   # create the table once, before the batches race to
    return fan_out(r, k.progress("persist"), persist_batch, stages.members(r, k.transformed), BATCH, k.day,
                   db=db)


@app.task
def persist_batch(batch: list[str], day: str, db: str | None = None) -> dict:
    """Upsert one batch's summaries in one transaction, then move the ids transformed -> persisted."""
    r, k = redis_client(), keys.Keys(day)
    found = [json.loads(s) for s in r.hmget(k.summaries, batch) if s is not None]
    with closing(database.connect(db)) as conn, conn:   # `with conn`: commit, or roll back on error
        database.upsert(conn, found)
    stored = [summary["station"] for summary in found]
    stages.move(r, k.transformed, k.persisted, stored)
    # A station in transformed without a summary is not persisted: it stays there, counted as failed.
    progress.advance(r, k.progress("persist"), done=len(stored), failed=len(batch) - len(stored))
    return {"day": day, "done": len(stored), "failed": len(batch) - len(stored)}
