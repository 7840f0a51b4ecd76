# Exercise copy of solutions/ch04_rate_limits/demo.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""`make demo`: chapter 4's loop over DEMO_STATIONS stations, within the API's limit, with its watchdog.

The kit brings Redis, the fake API (with the fault profile of the API_* settings)
and an embedded worker for `app`. `run` tells the limiter the API's published
limit, discovers the stations, kicks the loop, follows it, and checks every
SQLite row against the answer key; dead letters are counted with their reasons.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import redis
import requests

from ch01_periodic import measure
from workshop import settings as settings_mod
from workshop.workers import EmbeddedBeat

from . import pause, pipeline
from .app import app, beat_schedule

__all__ = ["app", "run"]


def run(r: redis.Redis, settings: settings_mod.Settings, timeout: float = 120.0) -> dict:
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.reset_limits(r)      # the demo alone calls this API: a fresh limiter
    app.conf.beat_schedule = beat_schedule(settings)
    with tempfile.TemporaryDirectory(prefix="ch04-demo-") as folder, \
            EmbeddedBeat(app, max_interval=min(1.0, settings.beat_interval)):
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.ch03_pipeline.discover(day, settings.demo_stations)
        enforced = pipeline.prepare(r)
        print(f"Loop: batches of {pipeline.api_batch_size()} stations (the API's maximum), "
              f"{pipeline.LOOP.width()} in flight, one limit for all: {enforced.rate:g}/s, bursts of {enforced.burst}")
        pipeline.LOOP.kick(r, day, db=db)
        finished = pipeline.LOOP.wait(r, day, timeout, show=True)
        counts = pipeline.outcome(r, day, db, settings)
    reasons = Counter(d["reason"] for d in pipeline.LOOP.dead_letters(r, day).values())
    stats = requests.get(f"{settings.effective_api_url}/_stats", timeout=10).json()
    faults = {kind: n for kind, n in stats["faults"].items() if n and kind != "glitch"}
    print(f"pauses after a 429 (every worker waits out the API's Retry-After): {len(pause.history(r))}; "
          f"API faults met (each retried with backoff, or dead-lettered): {faults or 'none'}; "
          f"dead letters (stations given up on, by reason): {dict(reasons) or 'none'}"
          + ("" if finished else f"; not finished after {timeout:.0f} s"))
    return {**counts, "twice": len(measure.fetched_more_than_once(stats))}
