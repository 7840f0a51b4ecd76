# Exercise copy of solutions/ch03_signals/watchdog.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""The watchdog: a beat task that restarts a loop that died silently.

A loop can die without anybody noticing: a signal handler that raises is logged
and swallowed by Celery (the batch succeeded, so nothing is retried); a worker
killed between two batches takes the next one with it. The loop's lock then
expires (its TTL), and nothing sends a batch any more, although work is left.

Every BEAT_INTERVAL seconds the watchdog looks at each watched day: no lock, no
stop switch, work left -> start the loop again (with the same `start` as kick,
so it can never make a second loop). It is low-frequency on purpose: the loop
does the work, the watchdog only repairs.
"""
from __future__ import annotations

import logging

import redis

from workshop.celery_app import redis_client
from workshop.lua import incr_once

from .app import WATCHDOG, app
from .loop import Loop
from .pipeline import LOOP

log = logging.getLogger(__name__)


def check_day(r: redis.Redis, loop: Loop, day: str) -> str:
    """Look after one day's loop: "stopped", "running", "idle" (no work: forgotten) or "restarted"."""
    k = loop.keys(day)
    # exercise 3.6: restart a loop that died with work left (and count it in k.restarts, once: workshop.lua.incr_once); never one stopped on purpose, never while the lock lives, never a second loop; a day without work is no longer watched
    raise NotImplementedError("exercise 3.6: restart a loop that died with work left (and count it in k.restarts, once: workshop.lua.incr_once); never one stopped on purpose, never while the lock lives, never a second loop; a day without work is no longer watched")


def check(r: redis.Redis, loop: Loop) -> dict[str, str]:
    """check_day for every day the loop watches: {day: what happened}."""
    seen = {day: check_day(r, loop, day) for day in sorted(r.smembers(loop.watched))}
    for day, what in seen.items():
        if what == "restarted":
            log.warning("watchdog: the %s loop of %s had work but no lock: restarted", loop.name, day)
    return seen


@app.task(name=WATCHDOG)
def watchdog() -> dict[str, str]:
    return check(redis_client(), LOOP)
