"""The loop: a pipeline that sends its own next batch, from Celery signals.

    kick ──> lock ──> advance ──> send batch ──> worker runs it ──┐
                        ^                                          │ task_success / task_failure
                        └──────────── handler (in the pool process)┘

A `Loop` is a list of `Segment`s (fetch, transform, persist), each a batch task
and the Redis set it takes its batches from. `advance` is one turn: honour the
stop switch, refresh the lock, pick the next step (a batch of the first segment
that has work) and send it. The handlers, connected to each segment's task with
the task object as `sender`, call `advance` when a batch ends; `start` calls it
for the first batch. No beat schedule drives the work: the loop runs while there
is work and stops when there is none, releasing its lock.

The loop travels with its batches: every message carries three headers (the
loop's name, its day and its owner token), so a handler knows which loop a
finished task belongs to, and a batch sent by hand (no headers) ends nothing.

Built to be extended (chapter 4): a `Loop` takes any tasks with the signature
(batch, day, **options); `Segment.take` decides how a batch is taken (a lease),
`next_step` what counts as work, `send` and `pause_after` are the places for
pacing, a shared rate limit or a pause after a 429.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import redis
from celery import Task
from celery.signals import task_failure, task_success

from workshop.celery_app import redis_client
from workshop import progress

from . import keys, lock

# Message headers a loop puts on each batch it sends (read back from task.request.headers).
NAME, DAY, OWNER = "loop_name", "loop_day", "loop_owner"

LOCK_TTL_ENV = "CH03_LOCK_TTL"
DEFAULT_LOCK_TTL = 15.0   # seconds; must outlast the longest batch (API timeout + time in the queue)
FAILURE_PAUSE = 0.25      # seconds before the batch after a failed one (chapter 4: backoff, Retry-After)


def lock_ttl() -> float:
    """The lock's TTL in seconds: CH03_LOCK_TTL, read at call time (tests and notebooks lower it)."""
    raw = os.environ.get(LOCK_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TTL
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{LOCK_TTL_ENV}={raw!r} is not valid: expected a number of seconds above 0; "
                         f"set it to such a value or unset it to use the default {DEFAULT_LOCK_TTL:g}.")
    return value


def first_ids(r: redis.Redis, key: str, size: int) -> list[str]:
    """The first `size` ids of the set, sorted; they stay in the set until their batch moves them."""
    return sorted(r.smembers(key))[:size]


@dataclass(frozen=True)
class Segment:
    """One stage of the loop: its batch task, called as task(batch, day, **options)."""

    name: str                       # "fetch"
    task: Task
    source: str                     # the chapter 2 set it takes batches from: "pending", "fetched", ...
    batch_size: Callable[[], int]   # read when a batch is taken, so settings changes reach it
    options: tuple[str, ...] = ()   # loop options passed on to the task as keyword arguments
    # How a batch is taken: take(r, source_key, size) -> ids. Default: the first `size` ids, sorted
    # (reproducible batches, so reproducible API faults), left in the set. Chapter 4 leases them instead.
    take: Callable[[redis.Redis, str, int], list[str]] | None = None


@dataclass(frozen=True)
class Step:
    """What the loop does next: one batch of one segment."""

    segment: Segment
    batch: list[str]


class Loop:
    def __init__(self, name: str, segments: tuple[Segment, ...] | list[Segment],
                 failure_pause: float = FAILURE_PAUSE):
        self.name, self.segments, self.failure_pause = name, tuple(segments), failure_pause

    # ---------------------------------------------------------------- where things are

    def keys(self, day=None) -> keys.LoopKeys:
        return keys.for_day(self.name, day)

    @property
    def watched(self) -> str:
        return keys.watched(self.name)

    def ttl_ms(self) -> int:
        return int(lock_ttl() * 1000)

    # ---------------------------------------------------------------- the signals

    def connect(self) -> None:
        """Hang the handlers on each segment's task. Sender = the task object: only its own ends count.

        `@app.task` gives a lazy proxy until the app is finalized; Celery connects a proxy sender
        once it becomes the task object, so this may run at import, before any configuration."""
        for segment in self.segments:
            uid = f"{self.name}:{segment.name}"
            task_success.connect(self.on_success, sender=segment.task, weak=False, dispatch_uid=uid + ":ok")
            task_failure.connect(self.on_failure, sender=segment.task, weak=False, dispatch_uid=uid + ":fail")

    def on_success(self, sender: Task, **_) -> None:
        """task_success, in the worker's pool process, once the task returned (no result is stored): next batch."""
        self._carry_on(sender.request, countdown=0.0)

    def on_failure(self, sender: Task, exception: BaseException | None = None, **_) -> None:
        """task_failure: the error log has it (error_log.py); the loop goes on after a pause."""
        self._carry_on(sender.request, countdown=self.pause_after(exception))

    def pause_after(self, exception: BaseException | None) -> float:
        """Seconds to wait before the next batch after a failed one."""
        return self.failure_pause

    def _carry_on(self, request, countdown: float) -> None:
        headers = request.headers or {}
        if headers.get(NAME) != self.name:
            return   # a batch sent by hand, not by this loop: nothing to continue
        self.advance(redis_client(), headers[DAY], headers[OWNER], countdown)

    # ---------------------------------------------------------------- one turn

    def next_step(self, r: redis.Redis, day) -> Step | None:
        """The next batch: a batch of the first segment, in order, that has work; None when none has."""
        k = self.keys(day).segments
        for segment in self.segments:
            take = segment.take or first_ids
            batch = take(r, getattr(k, segment.source), segment.batch_size())
            if batch:
                return Step(segment, batch)
        return None

    def advance(self, r: redis.Redis, day, owner: str, countdown: float = 0.0) -> str:
        """One turn of the loop, by the owner `owner`: "stopped", "lost", "finished" or the segment sent.

        "lost": the lock is not ours any more (it expired and another loop took over,
        or it was released): this loop ends here, so there is never a second one.
        """
        k = self.keys(day)
        self.report(r, k)
        # >>> exercise 3.1: stop switch set (r.exists(k.stop))? lock.release(...) and return "stopped"; lock.refresh(r, k.lock, owner, self.ttl_ms()) False? return "lost"; step = self.next_step(r, k.day): None? self.finish(r, k, owner) and return "finished"; else self.send(step, k.day, owner, countdown) and return step.segment.name
        if r.exists(k.stop):
            lock.release(r, k.lock, owner)
            return "stopped"
        if not lock.refresh(r, k.lock, owner, self.ttl_ms()):
            return "lost"
        step = self.next_step(r, k.day)
        if step is None:
            self.finish(r, k, owner)
            return "finished"
        self.send(step, k.day, owner, countdown)
        return step.segment.name
        # <<<

    def send(self, step: Step, day: str, owner: str, countdown: float = 0.0) -> None:
        """Send one batch, with the loop's headers and the options its segment takes."""
        options = redis_client().hgetall(self.keys(day).options)
        kwargs = {name: options[name] for name in step.segment.options if name in options}
        step.segment.task.apply_async((step.batch, day), kwargs, countdown=countdown or None,
                                      headers={NAME: self.name, DAY: day, OWNER: owner})

    def finish(self, r: redis.Redis, k: keys.LoopKeys, owner: str) -> None:
        """No work left: say so, stop watching, let go of the lock."""
        with r.pipeline() as p:
            p.set(k.finished, time.time())
            p.srem(self.watched, k.day)
            p.execute()
        lock.release(r, k.lock, owner)
        self.report(r, k)

    def report(self, r: redis.Redis, k: keys.LoopKeys) -> None:
        """Progress counters per segment: the stations past it, out of every discovered station."""
        sets = k.segments
        with r.pipeline(transaction=False) as p:
            p.scard(sets.stations)
            for segment in self.segments:
                p.scard(getattr(sets, segment.source))
            total, *waiting = p.execute()
        with r.pipeline(transaction=False) as p:
            for i, segment in enumerate(self.segments):
                p.hset(k.progress(segment.name), mapping={"total": total, "failed": 0,
                                                          "done": max(0, total - sum(waiting[:i + 1]))})
            p.execute()

    # ---------------------------------------------------------------- start, kick, stop

    def begin(self, r: redis.Redis, k: keys.LoopKeys, options: dict) -> None:
        """A new loop's bookkeeping: its options, not finished, watched by the watchdog."""
        with r.pipeline() as p:
            given = {name: value for name, value in options.items() if value is not None}
            if given:
                p.hset(k.options, mapping=given)
            p.delete(k.finished)
            p.sadd(self.watched, k.day)
            p.execute()

    def start(self, r: redis.Redis, day=None, **options) -> str | None:
        """Start the loop if none runs: its owner token, or None if one runs already. Keeps the stop switch."""
        k = self.keys(day)
        # >>> exercise 3.3: owner = uuid.uuid4().hex; lock.acquire(r, k.lock, owner, self.ttl_ms()) failed? return None (a loop runs already); else self.begin(r, k, options), self.advance(r, k.day, owner) (sends the first batch), return owner
        owner = uuid.uuid4().hex
        if not lock.acquire(r, k.lock, owner, self.ttl_ms()):
            return None
        self.begin(r, k, options)
        self.advance(r, k.day, owner)
        return owner
        # <<<

    def kick(self, r: redis.Redis, day=None, **options) -> str | None:
        """Make sure the loop runs: lift the stop switch, start it unless one runs. Safe to call any time.

        Returns the new loop's owner token, or None when a loop was already running.
        """
        k = self.keys(day)
        r.delete(k.stop)
        return self.start(r, k.day, **options)

    def stop(self, r: redis.Redis, day=None) -> None:
        """Ask the loop to stop: the batch in flight ends, no next one is sent, the lock is released."""
        r.set(self.keys(day).stop, time.time())

    # ---------------------------------------------------------------- looking at it

    def running(self, r: redis.Redis, day=None) -> str | None:
        """The running loop's owner token, or None."""
        return lock.owner(r, self.keys(day).lock)

    def finished(self, r: redis.Redis, day=None) -> bool:
        k = self.keys(day)
        return bool(r.exists(k.finished)) and not r.exists(k.lock)

    def status(self, r: redis.Redis, day=None) -> dict:
        k = self.keys(day)
        sets = k.segments
        return {"owner": r.get(k.lock), "lock_ttl_ms": max(r.pttl(k.lock), 0),
                "stop_switch": bool(r.exists(k.stop)),
                "finished": self.finished(r, k.day), "restarts": int(r.get(k.restarts) or 0),
                "work": {s.name: r.scard(getattr(sets, s.source)) for s in self.segments}}

    def wait(self, r: redis.Redis, day=None, timeout: float = 120.0, show: bool = False,
             until: Callable[[], bool] | None = None) -> bool:
        """Wait until the loop finished (True), or `until()` is true or `timeout` passed (False).

        show=True draws one progress bar per segment meanwhile.
        """
        k = self.keys(day)
        deadline = time.monotonic() + timeout
        over = (lambda: self.finished(r, k.day) or (until is not None and until()))
        if show:
            for segment in self.segments:
                progress.follow(r, k.progress(segment.name), desc=segment.name,
                                timeout=max(0.0, deadline - time.monotonic()), until=over)
        while not self.finished(r, k.day):
            if (until is not None and until()) or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def forget(self, r: redis.Redis, day=None) -> None:
        """Delete the loop's own keys for the day (not chapter 2's sets): to run the day afresh."""
        k = self.keys(day)
        r.delete(k.lock, k.stop, k.options, k.finished, k.restarts,
                 *[k.progress(segment.name) for segment in self.segments])
        r.srem(self.watched, k.day)
