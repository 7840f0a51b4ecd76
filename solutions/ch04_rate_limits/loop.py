"""Chapter 3's loop with a window of batches in flight, each batch leased.

Chapter 3 sends one batch at a time: the next leaves when the last one ended.
Against a rate limit that is too slow and too polite: one request in flight
cannot use the API's budget, and two workers would take turns, never work
together. Here `start` also starts `window - 1` *helpers*: each helper leases a
batch from pending, fetches it, and on success leases the next, until pending is
empty. The loop itself (the lead) goes on as in chapter 3, and moves on to
transform only once no lease is left in flight: it waits with a short tick.

    start ──> lead:    fetch ─> fetch ─> ... ─> (tick while leases fly) ─> transform ─> persist ─> finish
         └──> helpers: fetch ─> fetch ─> ... ─> (pending empty: end)

What makes more than one chain safe is the lease: a batch leaves pending
atomically when it is sent (leases.lease), so no two chains take the same
station; a chain that dies leaves a lease that expires and comes back (reaped at
every turn). How fast requests go is not the loop's business any more: the fetch
task asks the global limiter before each request, so any window, any number of
workers, gets the same pace.
"""
from __future__ import annotations

import os

import redis
from celery import Task
from celery.signals import task_success

from workshop.celery_app import redis_client
from ch03_signals import lock
from ch03_signals.keys import LoopKeys
from ch03_signals.loop import DAY, NAME, OWNER, Loop, Segment, Step

from . import dead_letters, leases, pause
from .fetch import lease_seconds
from .keys import for_day

HELPER = "loop_helper"   # a message header: this batch was sent by a helper, not by the loop itself
WINDOW_ENV = "CH04_WINDOW"
DEFAULT_WINDOW = 2       # batches in flight: one per worker process you run
WAIT_POLL = 0.5          # seconds between two looks while the last leases are in flight


def window() -> int:
    """Batches in flight: CH04_WINDOW, read at call time."""
    raw = os.environ.get(WINDOW_ENV, "").strip()
    if not raw:
        return DEFAULT_WINDOW
    if not (raw.isdigit() and int(raw) >= 1):
        raise ValueError(f"{WINDOW_ENV}={raw!r} is not valid: expected a whole number of batches from 1 up; "
                         f"set it to such a value or unset it to use the default {DEFAULT_WINDOW}.")
    return int(raw)


class LeasedLoop(Loop):
    """A chapter 3 loop whose first segment (fetch) is leased and kept `window()` batches wide."""

    def __init__(self, name: str, segments, tick: Task, width=window):
        super().__init__(name, segments)
        self.fetch = self.segments[0]
        self.waiting = Segment("wait", tick, source="pending", batch_size=lambda: 0)
        self.width = width

    # ---------------------------------------------------------------- signals

    def connect(self) -> None:
        """Chapter 3's handlers on every segment's task, and the lead's on the tick."""
        super().connect()
        task_success.connect(self.on_success, sender=self.waiting.task, weak=False,
                             dispatch_uid=f"{self.name}:wait:ok")

    def on_success(self, sender: Task, **extra) -> None:
        if (sender.request.headers or {}).get(HELPER):
            self._help_on(sender.request, countdown=0.0)
        else:
            super().on_success(sender, **extra)

    def on_failure(self, sender: Task, exception: BaseException | None = None, **extra) -> None:
        if (sender.request.headers or {}).get(HELPER):
            self._help_on(sender.request, countdown=self.pause_after(exception))
        else:
            super().on_failure(sender, exception=exception, **extra)

    def _help_on(self, request, countdown: float) -> None:
        headers = request.headers or {}
        if headers.get(NAME) == self.name:
            self.help(redis_client(), headers[DAY], headers[OWNER], countdown)

    # ---------------------------------------------------------------- one turn

    def lease(self, r: redis.Redis, day: str) -> list[str]:
        """Bring back expired leases, then lease the next batch (the smallest pending ids)."""
        k = for_day(day)
        leases.reap(r, k)
        return leases.lease(r, k, self.fetch.batch_size(), lease_seconds())

    def next_step(self, r: redis.Redis, day) -> Step | None:
        """Chapter 3's next step, but never past fetch while a lease is in flight: wait for it instead."""
        k = for_day(day)
        leases.reap(r, k)
        step = super().next_step(r, k.day)
        if (step is None or step.segment is not self.fetch) and r.zcard(k.in_flight):
            return Step(self.waiting, [])
        return step

    def send(self, step: Step, day: str, owner: str, countdown: float = 0.0) -> None:
        """A fetch step sends the batch it leases now (a helper may have taken the one next_step saw).

        Leasing here rather than through chapter 3's `Segment.take` hook: next_step is also
        the watchdog's "is there work?" question, and asking must not take a lease.
        """
        if step.segment is self.fetch:
            batch = self.lease(redis_client(), day)
            step = Step(self.fetch, batch) if batch else Step(self.waiting, [])
        if step.segment is self.waiting:
            countdown = max(countdown, WAIT_POLL)
        super().send(step, day, owner, countdown)

    def help(self, r: redis.Redis, day: str, owner: str, countdown: float = 0.0) -> str:
        """One turn of a helper: "stopped", "lost", "done" (nothing to lease) or "fetch" (a batch sent)."""
        k = self.keys(day)
        if r.exists(k.stop):
            return "stopped"
        if not lock.refresh(r, k.lock, owner, self.ttl_ms()):
            return "lost"
        batch = self.lease(r, k.day)
        if not batch:
            return "done"
        self.fetch.task.apply_async((batch, k.day), countdown=countdown or None,
                                    headers={NAME: self.name, DAY: k.day, OWNER: owner, HELPER: "1"})
        return "fetch"

    def start(self, r: redis.Redis, day=None, **options) -> str | None:
        """Chapter 3's start (the lead's first batch), then `window() - 1` helpers."""
        owner = super().start(r, day, **options)
        if owner is not None:
            for _ in range(self.width() - 1):
                if self.help(r, self.keys(day).day, owner) != "fetch":
                    break
        return owner

    # ---------------------------------------------------------------- looking at it

    def report(self, r: redis.Redis, k: LoopKeys) -> None:
        """Per segment: done = past it; failed = dead-lettered; leased stations still count as waiting."""
        sets, mine = k.segments, for_day(k.day)
        with r.pipeline(transaction=False) as p:
            p.scard(sets.stations)
            p.zcard(mine.in_flight)
            p.hlen(mine.dead_letters)
            for segment in self.segments:
                p.scard(getattr(sets, segment.source))
            total, flying, dead, *waiting = p.execute()
        with r.pipeline(transaction=False) as p:
            for i, segment in enumerate(self.segments):
                left = flying + sum(waiting[:i + 1])
                p.hset(k.progress(segment.name), mapping={"total": total, "failed": dead,
                                                          "done": max(0, total - dead - left)})
            p.execute()

    def status(self, r: redis.Redis, day=None) -> dict:
        k = for_day(self.keys(day).day)
        return {**super().status(r, k.day), "in_flight": r.zcard(k.in_flight),
                "dead_letters": r.hlen(k.dead_letters), "paused_for": round(pause.paused_for(r), 2)}

    def dead_letters(self, r: redis.Redis, day=None) -> dict[str, dict]:
        return dead_letters.dead_letters(r, for_day(self.keys(day).day))
