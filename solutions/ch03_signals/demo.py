"""The demo of chapter 3 (`python -m workshop demo --pipeline ch03_signals.demo`): its loop, with the watchdog on beat.

The kit brings Redis, the fake API and an embedded worker for `app`; `run`
discovers the stations, kicks the loop once and follows it until it runs out of
work: no schedule sends a batch, the loop sends its own. A beat runs the
watchdog meanwhile (it has nothing to repair on a good day). Every SQLite row
is then checked against the answer key.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import redis
import requests

from ch01_periodic import measure
from workshop import settings as settings_mod
from workshop.workers import EmbeddedBeat

from . import error_log, history, pipeline
from .app import app, beat_schedule

__all__ = ["app", "run"]


def run(r: redis.Redis, settings: settings_mod.Settings, timeout: float = 120.0) -> dict:
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    app.conf.beat_schedule = beat_schedule(settings)
    with tempfile.TemporaryDirectory(prefix="ch03-demo-") as folder, \
            EmbeddedBeat(app, max_interval=min(1.0, settings.beat_interval)):
        db = str(Path(folder) / "summaries.sqlite3")
        print(f"Loop: batches of {pipeline.fetch_batch_size()} stations, one after the other; "
              f"watchdog every {settings.beat_interval:g} s")
        pipeline.discover(day, settings.demo_stations)
        pipeline.kick(r, day, db=db)
        finished = pipeline.LOOP.wait(r, day, timeout, show=True)
        counts = pipeline.outcome(r, day, db, settings)
    rows = history.iterations(r, day)
    print(f"{len(rows)} iterations by {len({e['owner'] for e in rows})} loop(s), "
          f"{len(error_log.entries(r, day))} failed batches in the error log, "
          f"watchdog restarts {pipeline.LOOP.status(r, day)['restarts']}"
          + ("" if finished else f"; not finished after {timeout:.0f} s"))
    stats = requests.get(f"{settings.effective_api_url}/_stats", timeout=10).json()
    return {**counts, "twice": len(measure.fetched_more_than_once(stats))}
