# Exercise copy of solutions/ch04_rate_limits/pipeline.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""This chapter's loops, and running a day with them.

`LOOP` is chapter 3's pipeline (fetch -> transform -> persist) with chapter 4's
fetch: batches as large as the API takes, paced by the global limiter, leased,
retried, dead-lettered. `PER_WORKER_LOOP` is the same loop with Celery's own
per-worker `rate_limit` in place of the global limiter: the comparison.

`kick` configures what every worker shares before the loop starts: the limit
(from the API's published one), and checks that the app is crash-safe.
"""
from __future__ import annotations

import dataclasses

import redis

from ch02_segmented import keys as segment_keys, pipeline as segment_pipeline
from ch03_signals import pipeline as ch03_pipeline
from workshop import settings as settings_mod

from . import dead_letters, limiter, safety, tasks
from .app import app
from .keys import API, ApiKeys, for_day
from .loop import LeasedLoop

HISTORY, ERRORS = "ch04:history", "ch04:errors"   # chapter 3's history and error log, our streams (handlers.py)


def api_batch_size() -> int:
    """As many stations per request as the API takes: fewer requests for the same stations."""
    return settings_mod.load().api_max_batch


def segments(fetch_task) -> tuple:
    fetch, transform, persist = ch03_pipeline.segments(fetch_task, tasks.transform_batch, tasks.persist_batch)
    return dataclasses.replace(fetch, batch_size=api_batch_size), transform, persist


LOOP = LeasedLoop("ch04", segments(tasks.fetch_batch), tick=tasks.tick)
PER_WORKER_LOOP = LeasedLoop("ch04-per-worker", segments(tasks.fetch_batch_per_worker), tick=tasks.tick)
LOOPS = {"global": LOOP, "per-worker": PER_WORKER_LOOP}


def prepare(r: redis.Redis, limit: limiter.Limit | None = None, loop: LeasedLoop = LOOP) -> limiter.Limit:
    """Before a run: check the app, and tell every worker the API's limit (the one it publishes, by default).

    A lower limit learned from the API's `X-RateLimit-Limit` during an earlier run is kept, unless the
    published limit itself changed since.

    For the per-worker loop, the same limit goes to Celery's `rate_limit`, on each worker.
    """
    s = settings_mod.load()
    safety.check(app, s.request_timeout)
    published = limit or limiter.published_limit(s)
    enforced = limiter.configure_published(r, published)   # a limit learned since is kept
    if loop is PER_WORKER_LOOP:   # every worker running now says it took it (within a second)
        app.control.rate_limit(tasks.fetch_batch_per_worker.name, f"{published.rate:g}/s", reply=True, timeout=1.0)
    return enforced


def kick(r: redis.Redis, day=None, db: str | None = None, limit: limiter.Limit | None = None,
         loop: LeasedLoop = LOOP) -> str | None:
    """Configure the limit, then start the day's loop unless one runs: its owner token, or None."""
    prepare(r, limit, loop)
    return loop.kick(r, day, db=db)


def replay(r: redis.Redis, day=None, stations: list[str] | None = None, db: str | None = None,
           loop: LeasedLoop = LOOP) -> list[str]:
    """Once the cause is fixed: the day's dead letters (all, or `stations`) back to pending, and a kick.
    Returns the stations replayed."""
    replayed = dead_letters.replay(r, for_day(day), stations)
    if replayed:
        kick(r, day, db=db, loop=loop)
    return replayed


def run(r: redis.Redis, day=None, stations: int | None = None, db: str | None = None, timeout: float = 120.0,
        show: bool = True, loop: LeasedLoop = LOOP) -> bool:
    """The whole day (the first `stations` of the listing, or all): discover (chapter 3's), kick, wait.

    True when the loop ran out of work, False after `timeout` seconds.
    """
    day = segment_keys.day_of(day)
    ch03_pipeline.discover(day, stations)
    kick(r, day, db=db, loop=loop)
    return loop.wait(r, day, timeout, show=show)


def reset(r: redis.Redis, day=None) -> None:
    """Forget the day: chapter 2's and 4's keys, both loops' keys.

    Never the API's limit state (`reset_limits`): it is shared with every other day's loop, and one
    running now would find no limit (NoLimitError) or a fresh bucket that lets it burst into the API.
    """
    k = for_day(day)
    stale = [*r.scan_iter(match=k.pattern, count=1000),
             *r.scan_iter(match=f"progress:{segment_keys.PREFIX}:{k.day}:*")]
    if stale:
        r.delete(*stale)
    for loop in LOOPS.values():
        loop.forget(r, k.day)


def reset_limits(r: redis.Redis, name: str = API) -> None:
    """Forget the API's limit state (limit, learned limit, bucket, pause, its log): only when no loop,
    of any day, calls that API now, as in a benchmark or a notebook that owns the API."""
    r.delete(*ApiKeys(name).all())


def outcome(r: redis.Redis, day=None, db: str | None = None,
            settings: settings_mod.Settings | None = None) -> dict[str, int]:
    """Chapter 2's check of every discovered station's row, with dead letters counted as such.

    done: its row equals the answer key; wrong: a row that differs; dead: no row,
    dead-lettered (with a reason); missing: neither a row nor a dead letter.
    """
    k = for_day(day)
    counts = ch03_pipeline.outcome(r, k.day, db, settings)
    # Chapter 2 sorts a station without a row into failed (its fetch failed) or missing; here
    # such a station is dead-lettered, or missing.
    without_row = counts.pop("failed") + counts["missing"]
    with_row = {row["station"] for row in segment_pipeline.persisted_rows(r, k.day, db)}
    counts["dead"] = len(set(dead_letters.dead_letters(r, k)) - with_row)
    counts["missing"] = without_row - counts["dead"]
    return counts
