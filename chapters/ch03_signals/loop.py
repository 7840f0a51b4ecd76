# Exercise copy of solutions/ch03_signals/loop.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""The loop: a pipeline that sends its own next batch, from Celery signals.

    kick ──> lock ──> advance ──> send batch ──> worker runs it ──┐
                        ^                                          │ task_success / task_failure
                        └──────────── handler (in the pool process)┘

A `Loop` is a list of `Segment`s (fetch, transform, persist): a batch task and
the Redis stage it takes its batches from. `connect` hangs two handlers on each
segment's task; when a batch ends they call `advance`, one turn: take the turn
(lock.refresh: the lock is still ours, and no other message took this turn),
honour the stop switch, send a batch of the first segment that has work, or
`end` the loop. `start` takes the lock and sends the first batch, `kick` starts
a loop unless one runs, `stop` ends it after the batch in flight, the watchdog
restarts one that died. No timer drives the work. Each batch carries the loop's
headers and its turn (messages.py); failures.py says what a failed batch does,
progress_report.py what the loop shows.

Never a stall at the end: the end of a loop is one script (_END), and so is the
part of a kick that a running loop must see: either the loop sees the kick and
looks for work again, or the kick's own start finds no lock.

Built to be extended (chapter 4): any tasks with the signature (batch, day,
**options); `Segment.take` (how a batch is taken), `next_step` and `takes_work`
(what is work), `send` (pacing), `continue_chain` (other chains), `begin` and
`end` (a loop's life); failures.py and progress_report.py have hooks of their own.
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

from ch02_segmented import stages
from workshop.celery_app import redis_client
from workshop.lua import Script, once

from . import keys, lock
from .failures import FAILURE_PAUSE, FailurePolicy
from .messages import DAY, NAME, OWNER, Turn, batch_of
from .progress_report import ProgressReport

LOCK_TTL_ENV = "CH03_LOCK_TTL"
DEFAULT_LOCK_TTL = 15.0   # seconds; must outlast the longest batch (API timeout + time in the queue)


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


@dataclass(frozen=True)
class Segment:
    """One stage of the loop: its batch task, called as task(batch, day, **options)."""

    name: str                       # "fetch"
    task: Task
    source: str                     # the chapter 2 stage it takes batches from: "pending", "fetched", ...
    batch_size: Callable[[], int]   # read when a batch is taken, so settings changes reach it
    options: tuple[str, ...] = ()   # loop options passed on to the task as keyword arguments
    # How a batch is taken: take(r, source_key, size) -> ids. Default: the stage's first `size` ids
    # (reproducible batches, so reproducible API faults), left in it. Chapter 4 leases them instead.
    take: Callable[[redis.Redis, str, int], list[str]] | None = None


# KEYS: lock, kicked, finished, then a subclass's (`end`'s more_keys), then the call's answer key; ARGV: owner,
# now, "finish" | "stop", then a subclass's (more_args). One script, so that a kick (which sets `kicked` before it
# tries the lock) cannot land between "no work left" and "lock released": either we see it, or its start
# finds no lock. Whatever else must happen exactly when the loop ends (chapter 5 closes its run) goes in
# the same script, at "-- ended". Safe twice (workshop.lua.once): a repeat answers what the first run did.
_END = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 'lost' end
if redis.call('del', KEYS[2]) == 1 then return 'again' end
redis.call('del', KEYS[1])
local ended = 'finished'
if ARGV[3] == 'stop' then ended = 'stopped' else redis.call('set', KEYS[3], ARGV[2]) end
-- ended
return ended
"""


@dataclass(frozen=True)
class Step:
    """What the loop does next: one batch of one segment."""

    segment: Segment
    batch: list[str]


class Loop(FailurePolicy, ProgressReport):
    def __init__(self, name: str, segments: tuple[Segment, ...] | list[Segment],
                 failure_pause: float = FAILURE_PAUSE):
        self.name, self.segments, self.failure_pause = name, tuple(segments), failure_pause
        self._options: dict[tuple[str, str], dict] = {}   # (day, owner) -> the loop's options
        self._end: Script | None = None   # the end's script, with what a subclass adds (end_lua)

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
        """Hang the loop's two handlers on each segment's task, and on no other task, once."""
        # exercise 3.1: on every segment's task, and no other, self.on_success runs when it returns and self.on_failure when it raises; the connection lasts as long as the process (nothing else holds the bound methods); calling connect() again adds no second call per task end
        raise NotImplementedError("exercise 3.1: on every segment's task, and no other, self.on_success runs when it returns and self.on_failure when it raises; the connection lasts as long as the process (nothing else holds the bound methods); calling connect() again adds no second call per task end")

    def on_success(self, sender: Task, **_) -> None:
        """task_success, in the worker's pool process, once the task returned (no result is stored): next batch."""
        request = sender.request
        if self._ours(request):
            self.clear_failures(redis_client(), request.headers[DAY], self.segment_of(sender),
                                batch_of(request.args))
            self._carry_on(request, countdown=0.0)

    def on_failure(self, sender: Task, exception: BaseException | None = None, task_id: str | None = None,
                   args=(), **_) -> None:
        """task_failure: the error log has it (error_log.py); the loop counts it and goes on after a pause.

        In the pool process, the request is the failed task's. A batch killed by its hard time
        limit comes without it (failures.py: `recover_killed`).
        """
        request = sender.request
        if self._ours(request):
            self.count_failure(redis_client(), request.headers[DAY], self.segment_of(sender),
                               batch_of(request.args), exception)
            self._carry_on(request, countdown=self.pause_after(exception))
        else:
            self.recover_killed(sender, exception, task_id or "", args)

    def _ours(self, request) -> bool:
        return (request.headers or {}).get(NAME) == self.name

    def _carry_on(self, request, countdown: float) -> None:
        headers = request.headers
        self.continue_chain(redis_client(), headers[DAY], headers[OWNER], Turn.of(request), countdown)

    def continue_chain(self, r: redis.Redis, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> str:
        """The next turn of the chain `turn` belongs to; here there is one chain, the loop's own."""
        return self.advance(r, day, owner, countdown, turn)

    def segment_of(self, task: Task) -> Segment | None:
        return next((segment for segment in self.segments if segment.task.name == task.name), None)

    # ---------------------------------------------------------------- one turn

    def next_step(self, r: redis.Redis, day) -> Step | None:
        """The next batch: a batch of the first segment, in order, that has work; None when none has.

        A batch is halved after failures (failures.py: the poison hunt).
        """
        k = self.keys(day)
        for segment in self.segments:
            if not self.takes_work(r, k.day, segment):
                continue
            take = segment.take or stages.first
            size = segment.batch_size()
            batch = self.halved(r, k, segment, take(r, getattr(k.segments, segment.source), size), size)
            if batch:
                return Step(segment, batch)
        return None

    def takes_work(self, r: redis.Redis, day: str, segment: Segment) -> bool:
        """Whether `segment` may take a batch now: always, here (chapter 5's fetch stops once the run's
        budget is spent, and the loop goes on with what was fetched)."""
        return True

    def advance(self, r: redis.Redis, day, owner: str, countdown: float = 0.0, turn: Turn = Turn()) -> str:
        """One turn of the loop, by the owner `owner`: "stopped", "lost", "finished" or the segment sent.

        "lost": the lock is not ours any more (it expired and another loop took over,
        or it was released), or this turn was taken already (a message that ran twice):
        this chain ends here, so there is never a second one.
        """
        k = self.keys(day)
        if self.report_due(k.day):
            self.report(r, k)
        following = turn.next()
        # exercise 3.3: take this turn with lock.refresh (not ours, or taken already: "lost", send nothing); then the stop switch ends the loop, else send the next step as `following` and return its segment's name, else end it as finished; `end` answering "again" (a kick came) means look again
        raise NotImplementedError('exercise 3.3: take this turn with lock.refresh (not ours, or taken already: "lost", send nothing); then the stop switch ends the loop, else send the next step as `following` and return its segment\'s name, else end it as finished; `end` answering "again" (a kick came) means look again')

    def send(self, step: Step, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> None:
        """Send one batch as `turn`, with the loop's headers and the options its segment takes.

        A countdown first holds the lock for countdown + TTL: the watchdog must not take a
        loop whose next batch only waits for a dead one.
        """
        r, k = redis_client(), self.keys(day)
        if countdown:
            lock.hold(r, k.lock, owner, int(countdown * 1000) + self.ttl_ms())
        options = self.options(r, k, owner)
        kwargs = {name: options[name] for name in step.segment.options if name in options}
        step.segment.task.apply_async((step.batch, day), kwargs, countdown=countdown or None,
                                      task_id=turn.task_id or None,
                                      headers={NAME: self.name, DAY: day, OWNER: owner, **turn.headers()})

    def options(self, r: redis.Redis, k: keys.LoopKeys, owner: str) -> dict:
        """The options the loop was started with (db, ...). `begin` writes them before its owner's first
        turn and nothing changes them after: read once per owner in each process, not on every send."""
        if (k.day, owner) not in self._options:
            if len(self._options) > 64:   # owners of days long over
                self._options.clear()
            self._options[k.day, owner] = r.hgetall(k.options)
        return self._options[k.day, owner]

    def end(self, r: redis.Redis, k: keys.LoopKeys, owner: str, why: str, more_keys: tuple = (),
            more_args: tuple = ()) -> str:
        """End the loop ("finish": no work left; "stop": the stop switch): one script, see _END.

        "again" means a kick came meanwhile: the caller looks for work again. `more_keys` and
        `more_args` are KEYS[4], ... and ARGV[4], ... for what a subclass adds to the script (end_lua).
        """
        if self._end is None:
            self._end = Script(once(_END.replace("-- ended", self.end_lua())))
        answer = f"{k.base}:end:{uuid.uuid4().hex}"   # this call's: a repeat finds its first answer there
        ended = self._end(r, keys=[k.lock, k.kicked, k.finished, *more_keys, answer],
                          args=[owner, time.time(), why, *more_args])
        if ended == "finished":
            self.unwatch(r, k.day)
        if ended in ("finished", "stopped"):
            self.report(r, k)
        return ended

    def end_lua(self) -> str:
        """Lua run inside the end's script once the loop ended (`ended` is "finished" or "stopped"): none here."""
        return ""

    def unwatch(self, r: redis.Redis, day: str) -> None:
        """Stop watching a day without work, unless a new loop took it meanwhile (its begin may have
        added it just before our SREM): the watched set is kept out of the scripts, as it spans days."""
        r.srem(self.watched, day)
        if r.exists(self.keys(day).lock):
            r.sadd(self.watched, day)

    # ---------------------------------------------------------------- start, kick, stop, forget

    def begin(self, r: redis.Redis, k: keys.LoopKeys, options: dict) -> None:
        """A new loop's bookkeeping: its options, not finished, no turns taken, watched by the watchdog."""
        with r.pipeline() as p:   # MULTI: the day's keys, one slot on a Redis Cluster
            given = {name: value for name, value in options.items() if value is not None}
            if given:
                p.hset(k.options, mapping=given)
            p.delete(k.finished, k.kicked, k.turns)
            p.execute()
        r.sadd(self.watched, k.day)   # spans days, so its own slot: outside the transaction

    def start(self, r: redis.Redis, day=None, **options) -> str | None:
        """Start the loop if none runs: its owner token, or None if one runs already. Keeps the stop switch."""
        k = self.keys(day)
        # exercise 3.5: at most one loop per day, however many start at once: a new owner token takes the lock or we return None; the owner then begins (options, watched) and advances once (the first batch); return the token
        raise NotImplementedError("exercise 3.5: at most one loop per day, however many start at once: a new owner token takes the lock or we return None; the owner then begins (options, watched) and advances once (the first batch); return the token")

    def kick(self, r: redis.Redis, day=None, **options) -> str | None:
        """Make sure the loop runs: lift the stop switch, start it unless one runs. Safe to call any time.

        Returns the new loop's owner token, or None when a loop was already running. A loop that
        is about to end sees the kick (see _END) and looks for work once more.
        """
        k = self.keys(day)
        with r.pipeline() as p:   # MULTI: the stop switch is lifted and the kick seen together
            p.set(k.kicked, time.time())
            p.delete(k.stop)
            p.execute()
        r.sadd(self.watched, k.day)
        return self.start(r, k.day, **options)

    def stop(self, r: redis.Redis, day=None, why: str = "stopped by hand") -> None:
        """Ask the loop to stop: the batch in flight ends, no next one is sent, the lock is released.

        `why` stays in the stop switch, for `status` (a task that stops the loop says what to fix)."""
        r.set(self.keys(day).stop, why)

    def forget(self, r: redis.Redis, day=None) -> None:
        """Delete the loop's own keys for the day (not chapter 2's sets): to run the day afresh."""
        k = self.keys(day)
        r.delete(k.lock, k.stop, k.options, k.finished, k.restarts, k.turns, k.kicked, k.failures, k.poison)
        r.delete(*[k.progress(segment.name) for segment in self.segments])   # untagged: a slot each, on a cluster
        r.srem(self.watched, k.day)
