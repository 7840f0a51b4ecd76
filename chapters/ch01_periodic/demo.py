# Exercise copy of solutions/ch01_periodic/demo.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The demo of chapter 1 (`python -m workshop demo --pipeline ch01_periodic.demo`): the monolith on a timer, then its figures.

The kit brings Redis, the fake API and a worker for `app`; this starts celery
beat, follows the progress until the schedule went round, and counts the
stations against the answer key. With the default settings a slice (50) is
bigger than the API's burst (20): expect 429s and stations missing.
"""
from __future__ import annotations

import logging

import requests

from workshop import settings as settings_mod
from workshop.workers import EmbeddedBeat

from . import measure, pipeline, runs
from .app import app, beat_schedule
from .stations_api import list_stations

__all__ = ["app", "run"]


def run(r, settings: settings_mod.Settings, timeout: float | None = None, show: bool = True) -> dict:
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    ids = list_stations(settings)[:settings.demo_stations]
    pipeline.plan_day(r, day, ids)            # the day's list: the first DEMO_STATIONS of the listing
    slices = -(-len(ids) // settings.slice_size)
    timeout = timeout or 60 + 3 * (slices + 1) * settings.beat_interval
    app.conf.beat_schedule = beat_schedule(settings)
    print(f"Monolith: a slice of {settings.slice_size} stations every {settings.beat_interval:g} s, "
          f"{slices} slices")
    # The worker would print each failed run's traceback; one line per run from the run log says enough.
    trace_log = logging.getLogger("celery.app.trace")
    level = trace_log.level
    trace_log.setLevel(logging.CRITICAL)
    try:
        with EmbeddedBeat(app, max_interval=min(1.0, settings.beat_interval / 4)):
            went_round = runs.wait(r, day, timeout, show=show)
    finally:
        trace_log.setLevel(level)
    log = runs.log(r, day)
    for run in sorted(log, key=lambda run: run.started):
        if run.error:
            which = f"stations {run.start}-{run.start + run.size - 1}" if run.size else "nothing taken yet"
            print(f"  a run ({which}) stopped after {run.done} stations: {run.error}")
    stats = requests.get(f"{settings.effective_api_url}/_stats", timeout=10).json()
    row = measure.figures(stats, pipeline.summaries(r, day), ids, day)
    print(f"runs {len(log)}, at most {runs.most_at_once(log)} at once; "
          f"duplicates {row['duplicates']}; API utilisation {row['utilisation']:.0%}"
          + ("" if went_round else f"; stopped after {timeout:.0f} s before the schedule went round"))
    return {"stations": row["stations"], "done": row["done"], "missing": row["missing"], "wrong": row["wrong"],
            "twice": len(measure.fetched_more_than_once(stats))}
