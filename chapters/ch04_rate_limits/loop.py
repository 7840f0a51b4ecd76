# Exercise copy of solutions/ch04_rate_limits/loop.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 3's loop with a window of batches in flight, each batch leased.

Chapter 3 sends one batch at a time: the next leaves when the last one ended.
Against a rate limit that is too slow and too polite: one request in flight
cannot use the API's budget, and two workers would take turns, never work
together. Here `start` also starts `window - 1` *helpers*: each helper leases a
batch from pending, fetches it, and on success leases the next, until pending is
empty. The loop itself (the lead) goes on as in chapter 3, and moves on to
transform only once no lease is left in flight: meanwhile it *parks* its next
turn, and the helper whose batch settles the last lease wakes it at once (a
slow tick is the safety net, for a lease that only expires).

    start ──> lead:    fetch ─> fetch ─> ... ─> (parked while leases fly) ─> transform ─> persist ─> finish
         └──> helpers: fetch ─> fetch ─> ... ─> (pending empty: end; the last one wakes the lead)

What makes more than one chain safe is the lease: a batch leaves pending
atomically when it is sent (leases.lease), held by that message's token, so no
two chains take the same station; a chain that dies leaves a lease that expires
and comes back (reaped at every turn). Each chain has its own turns (chapter 3's
lock.refresh): the lead is chain "0", the helpers "1", "2", ... How fast requests
go is not the loop's business any more: the fetch task asks the global limiter
before each request, so any window, any number of workers, gets the same pace.
"""
from __future__ import annotations

import json
import os

import redis
from celery import Task
from celery.signals import task_success

from workshop.celery_app import redis_client
from ch03_signals.keys import LoopKeys
from ch03_signals.loop import Loop, Segment, Step
from ch03_signals.messages import LEAD, Turn

from . import circuit, dead_letters, leases, pause, retries, turn as fused_turn
from .fetch import lease_seconds
from .keys import for_day

WINDOW_ENV = "CH04_WINDOW"
DEFAULT_WINDOW = 2       # batches in flight: one per worker process you run
WAIT_POLL = 2.0          # seconds between two looks while leases fly: the safety net of the wake-up


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
        self._fetched: set[tuple[str, str]] = set()   # (day, owner) of loops whose pending ran empty (fetch_turn)

    # ---------------------------------------------------------------- signals

    def connect(self) -> None:
        """Chapter 3's handlers on every segment's task, and the lead's on the tick."""
        super().connect()
        task_success.connect(self.on_success, sender=self.waiting.task, weak=False,
                             dispatch_uid=f"{self.name}:wait:ok")

    def continue_chain(self, r: redis.Redis, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> str:
        """The lead goes on as in chapter 3; a helper leases its next batch, or ends and wakes the lead."""
        if turn.chain == LEAD:
            if (day, owner) not in self._fetched and self.takes_work(r, day, self.fetch) and self.may_lease(r, day):
                fetched = self.fetch_turn(r, day, owner, turn, countdown)   # fetching: one round trip
                if fetched not in ("stopped", "none"):
                    return fetched
                if fetched == "none":   # pending is empty: this loop's later turns go chapter 3's way at once
                    if len(self._fetched) > 64:   # loops of days long over
                        self._fetched.clear()
                    self._fetched.add((day, owner))
            return super().continue_chain(r, day, owner, turn, countdown)   # nothing taken yet: chapter 3's turn
        helped = self.help(r, day, owner, turn, countdown)
        if helped != "fetch":
            self.wake_lead(r, day)
        return helped

    def parked(self, day: str) -> str:
        """The key of the lead's parked turn: owner, number, task id (see `send`)."""
        return f"{self.keys(day).base}:parked"

    def wake_lead(self, r: redis.Redis, day: str) -> None:
        """No lease left in flight: take the lead's parked turn now, rather than at its tick.

        GETDEL: of several helpers ending at once, one wakes it; the tick that comes later
        finds its turn taken and ends as "lost" (and so does a wake-up after the tick).
        """
        if r.zcard(for_day(day).in_flight):
            return
        raw = r.getdel(self.parked(day))
        if raw:
            parked = json.loads(raw)
            super().continue_chain(r, day, parked["owner"], Turn(LEAD, parked["number"], parked["task_id"]))

    def after_time_limit(self, segment: Segment | None, batch: list[str], day: str, task_id: str,
                         exception: BaseException) -> None:
        """A fetch killed by its hard time limit: its stations back to pending at once, the attempt's
        cause "time limit" (counted when the delivery started; uncounted if the circuit is open: the
        API is down, circuit.py); then chapter 3's: continue its chain."""
        if segment is self.fetch:
            r, k = redis_client(), for_day(day)
            failure = retries.Failure("time limit", f"killed by the hard time limit ({exception})", True)
            holder = next((h for h in r.hmget(k.holders, batch) if h and h.startswith(f"{task_id}:")), None)
            down = holder is not None and circuit.failed(r, failure, batch, holder).open   # (none: a stale message)
            leases.release(r, k, batch, f"{task_id}:", prefix=True, uncount=down, cause=failure.cause())
        super().after_time_limit(segment, batch, day, task_id, exception)

    # ---------------------------------------------------------------- poison

    def counts_failures(self, segment: Segment) -> bool:
        """Fetch counts attempts per station itself (retries.py); transform and persist count here."""
        return segment is not self.fetch and segment is not self.waiting

    def set_aside(self, r: redis.Redis, k: LoopKeys, segment: Segment, station: str, why: str,
                  failures: int) -> None:
        """A poison station is dead-lettered, reason "poison", like any other station we gave up on."""
        day = for_day(k.day)
        if dead_letters.set_aside(r, day, getattr(day, segment.source), station,
                                  retries.Failure("poison", f"{segment.name}: {why}", False), failures):
            r.hdel(k.failures, f"{segment.name}:{station}")

    # ---------------------------------------------------------------- one turn

    def may_lease(self, r: redis.Redis, day: str) -> bool:
        """Whether a chain may lease another batch now: always, here (chapter 5: not once the budget is spent)."""
        return True

    def lease(self, r: redis.Redis, day: str, task_id: str) -> list[str]:
        """Lease the next batch (the smallest pending ids, expired leases brought back first) for task `task_id`."""
        if not self.may_lease(r, day):
            return []
        return leases.lease(r, for_day(day), self.fetch.batch_size(), lease_seconds(), leases.token(task_id))

    def fetch_turn(self, r: redis.Redis, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> str:
        """A fetch chain's turn in one round trip (turn.py: the stop switch, the turn, the lease): "fetch" (a
        batch sent), "lost", or, with nothing taken, "stopped" or "none" (nothing to lease). The lead takes
        its fetch turns here too, and chapter 3's turn (`advance`) once there is nothing to lease."""
        k = self.keys(day)
        if self.report_due(k.day):
            self.report(r, k)
        following = turn.next()
        answer, batch = fused_turn.take(r, k, owner, turn, following, self.ttl_ms(), self.fetch.batch_size(),
                                        lease_seconds())
        if answer == "expired":   # the turn is ours; an expired lease comes back first (the reaper), then a batch
            answer, batch = "leased", self.lease(r, k.day, following.task_id)
        if answer != "leased":
            return answer
        if not batch:   # (rare: chapter 5's budget spent meanwhile) a helper ends, the lead waits
            if turn.chain != LEAD:
                return "done"
            self.send(Step(self.waiting, []), k.day, owner, following, countdown)
            return self.waiting.name
        Loop.send(self, Step(self.fetch, batch), k.day, owner, following, countdown)
        return "fetch"

    def next_step(self, r: redis.Redis, day) -> Step | None:
        """Chapter 3's next step, but never past fetch while a lease is in flight: wait for it instead."""
        k = for_day(day)
        step = super().next_step(r, k.day)
        if (step is None or step.segment is not self.fetch) and r.zcard(k.in_flight):
            # An expired lease (its worker died) is work again; any other is in flight: wait for it.
            return super().next_step(r, k.day) if leases.reap(r, k) else Step(self.waiting, [])
        return step

    def send(self, step: Step, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> None:
        """A fetch step sends the batch it leases now (a helper may have taken the one next_step saw).

        Leasing here rather than through chapter 3's `Segment.take` hook: next_step is also
        the watchdog's "is there work?" question, and asking must not take a lease.
        """
        if step.segment is self.fetch:
            batch = self.lease(redis_client(), day, turn.task_id)
            step = Step(self.fetch, batch) if batch else Step(self.waiting, [])
        if step.segment is self.waiting:   # park this turn for the helper that settles the last lease
            countdown = max(countdown, WAIT_POLL)
            redis_client().set(self.parked(day), json.dumps({"owner": owner, "number": turn.number,
                                                             "task_id": turn.task_id}),
                               px=int(countdown * 1000) + self.ttl_ms())
        super().send(step, day, owner, turn, countdown)
        if step.segment is self.waiting:   # the last lease may have settled since next_step looked
            self.wake_lead(redis_client(), day)

    def help(self, r: redis.Redis, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> str:
        """One turn of a helper chain: "stopped", "lost", "done" (nothing to lease) or "fetch" (a batch sent)."""
        if not self.may_lease(r, day):
            return "done"
        helped = self.fetch_turn(r, day, owner, turn, countdown)
        return "done" if helped == "none" else helped

    def start(self, r: redis.Redis, day=None, **options) -> str | None:
        """Chapter 3's start (the lead's first batch), then `window() - 1` helper chains."""
        owner = super().start(r, day, **options)
        if owner is not None:
            for chain in range(1, self.width()):
                if self.help(r, self.keys(day).day, owner, Turn(str(chain))) != "fetch":
                    break
        return owner

    # ---------------------------------------------------------------- looking at it

    def report(self, r: redis.Redis, k: LoopKeys) -> None:
        """Per segment: done = past it; failed = dead-lettered; leased stations still count as waiting."""
        sets, mine = k.segments, for_day(k.day)
        with r.pipeline(transaction=False) as p:
            p.zcard(sets.stations)
            p.zcard(mine.in_flight)
            p.hlen(mine.dead_letters)
            for segment in self.segments:
                p.zcard(getattr(sets, segment.source))
            total, flying, dead, *waiting = p.execute()
        with r.pipeline(transaction=False) as p:
            for i, segment in enumerate(self.segments):
                left = flying + sum(waiting[:i + 1])
                p.hset(k.progress(segment.name), mapping={"total": total, "failed": dead,
                                                          "done": max(0, total - dead - left)})
            p.execute()

    def status(self, r: redis.Redis, day=None) -> dict:
        k = for_day(self.keys(day).day)
        return {**super().status(r, k.day), "in_flight": r.zcard(k.in_flight), "attempts": r.hlen(k.attempts),
                "dead_letters": r.hlen(k.dead_letters), "paused_for": round(pause.paused_for(r), 2),
                "circuit": circuit.state(r)}

    def forget(self, r: redis.Redis, day=None) -> None:
        super().forget(r, day)
        r.delete(self.parked(self.keys(day).day))

    def dead_letters(self, r: redis.Redis, day=None) -> dict[str, dict]:
        return dead_letters.dead_letters(r, for_day(self.keys(day).day))
