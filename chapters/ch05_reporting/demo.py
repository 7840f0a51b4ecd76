# Exercise copy of solutions/ch05_reporting/demo.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""`make demo`: chapter 5's loop over DEMO_STATIONS stations, in a run with RUN_BUDGET (if set), reported.

The kit brings Redis, the fake API and an embedded worker for `app` (which loads
the report pipeline with the app's `include`). `run` runs the day and waits for
the run's report; the demo ends on it (`report()`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import redis

from workshop import settings as settings_mod

from . import pipeline, report as report_mod, reporting
from .app import app

__all__ = ["app", "run", "report"]

_last: dict = {}


def run(r: redis.Redis, settings: settings_mod.Settings, timeout: float = 120.0) -> dict:
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.ch04_pipeline.reset_limits(r)   # the demo alone calls this API: a fresh limiter
    with tempfile.TemporaryDirectory(prefix="ch05-demo-") as folder:
        db = str(Path(folder) / "summaries.sqlite3")
        budget = "none" if settings.run_budget is None else f"${settings.run_budget:g}"
        print(f"Loop: chapter 4's, batches of {pipeline.batch_size()} (cheapest per station), budget {budget} (RUN_BUDGET)")
        run_id = pipeline.run(r, day, settings.demo_stations, db=db, timeout=timeout, show=True)
        row = reporting.wait(r, run_id, db=db) if run_id else None
        counts = pipeline.outcome(r, day, db, settings)
    _last.update(row=row, page=str(reporting.page_path(run_id)) if row else None)
    return counts


def report() -> str:
    """The run's report, for the demo's last words."""
    if not _last.get("row"):
        return "No report: the run did not end in time (see the worker's log)."
    return f"{report_mod.text(_last['row'])}\n\nThe run's page: {_last['page']}"
