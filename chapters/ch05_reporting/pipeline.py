# Exercise copy of solutions/ch05_reporting/pipeline.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""This chapter's loop, and running a day with it, in runs.

`LOOP` is chapter 4's pipeline (fetch -> transform -> persist, leased, limited,
retried) whose fetch pays from the run's budget and screens what comes in. A
`run` is one kick's worth of work: `kick(budget=...)` opens one unless one is
open, and its end sends `run_finished` (loop.py). This module imports nothing of
the report pipeline: that is the point.
"""
from __future__ import annotations

import dataclasses

import redis

from ch02_segmented import keys as segment_keys
from ch03_signals import pipeline as ch03_pipeline
from ch04_rate_limits import limiter, pipeline as ch04_pipeline, safety
from workshop import settings as settings_mod

from . import budget, prices, runs, tasks
from .app import app
from .keys import open_run, quality
from .loop import ReportingLoop

HISTORY, ERRORS = "ch05:history", "ch05:errors"   # chapter 3's history and error log, our streams


def batch_size() -> int:
    """The cheapest batch the API takes, from the published price list (prices.cheapest_batch)."""
    s = settings_mod.load()
    return prices.Prices.published(s).cheapest_batch(s.api_max_batch)


def segments() -> tuple:
    fetch, transform, persist = ch03_pipeline.segments(tasks.fetch_batch, tasks.transform_batch,
                                                       tasks.persist_batch)
    return dataclasses.replace(fetch, batch_size=batch_size, options=("run",)), transform, persist


LOOP = ReportingLoop("ch05", segments(), tick=tasks.tick)


def budget_micro(amount: float | None) -> int | None:
    """A budget in money (RUN_BUDGET when not given; None: no budget), in millionths."""
    amount = settings_mod.load().run_budget if amount is None else amount
    if amount is not None and not amount >= 0:
        raise ValueError(f"a run's budget must be an amount from 0 up, got {amount!r}; pass e.g. 0.05.")
    return None if amount is None else prices.to_micro(amount)


def kick(r: redis.Redis, day=None, db: str | None = None, budget: float | None = None) -> str | None:
    """Check the app, configure the limit, start the day's loop unless one runs; its owner token or None.

    A loop that starts opens a run with this budget (RUN_BUDGET by default) unless one is open: a kick
    while a run is open goes on in it, with its budget."""
    s = settings_mod.load()
    safety.check(app, s.request_timeout)
    limiter.configure_published(r, limiter.published_limit(s))
    return LOOP.kick(r, day, db=db, budget=budget_micro(budget))


def run(r: redis.Redis, day=None, stations: int | None = None, db: str | None = None, timeout: float = 120.0,
        show: bool = True, budget: float | None = None) -> str | None:
    """A run of the day (the first `stations` of the listing, or all): discover, kick, wait for the end.

    Returns the run's id, or None when the loop did not end within `timeout`."""
    day = segment_keys.day_of(day)
    ch03_pipeline.discover(day, stations)
    kick(r, day, db=db, budget=budget)
    run_id = runs.current(r, day)
    if not LOOP.wait(r, day, timeout, show=show):
        return None
    return run_id


def budget_left(r: redis.Redis, run: str) -> dict:
    return budget.state(r, run)


def reset(r: redis.Redis, day=None) -> None:
    """Forget the day (chapter 4's keys, this loop's, the open run and the findings); the runs' own
    records stay for their reports."""
    day = segment_keys.day_of(day)
    ch04_pipeline.reset(r, day)
    LOOP.forget(r, day)
    r.delete(open_run(day), quality(day))


def outcome(r: redis.Redis, day=None, db: str | None = None,
            settings: settings_mod.Settings | None = None) -> dict[str, int]:
    """Chapter 4's check: every discovered station's row against the answer key, dead letters counted."""
    return ch04_pipeline.outcome(r, day, db, settings)
