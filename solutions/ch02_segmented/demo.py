"""The demo of chapter 2 (`python -m workshop demo --pipeline ch02_segmented.demo`): its pipeline end to end.

The kit brings Redis, the fake API and an embedded worker for `app`; `run`
starts each segment by hand, in order, and checks every SQLite row against the
answer key.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import redis

from workshop import settings as settings_mod

from . import keys, pipeline
from .app import app  # noqa: F401  (the kit starts a worker for it)


def run(r: redis.Redis, settings: settings_mod.Settings) -> dict:
    k = keys.for_day(settings.day)
    stale = list(r.scan_iter(match=k.pattern, count=1000))
    if stale:   # a fresh run: forget an earlier demo's state for this day
        r.delete(*stale)
    with tempfile.TemporaryDirectory(prefix="ch02-demo-") as folder:
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.run_all(r, k.day, limit=settings.demo_stations, db=db)
        return pipeline.outcome(r, k.day, db, settings)
