# Exercise copy of solutions/ch03_signals/loop.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
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

The loop travels with its batches: every message carries the loop's name, its
day and its owner token, so a handler knows which loop a finished task belongs
to, and a batch sent by hand (no headers) ends nothing. It also carries its
*turn*: which chain of batches it belongs to and its number in that chain. The
lock's refresh script (lock.py) takes a turn only once, so a message that runs
again after its worker died between its success and its acknowledgement ends as
"lost" instead of starting a second chain.

What can never happen:
- a stall at the end: the end of a loop is one script, and so is the part of a
  kick that a running loop must see. A kick either finds the loop running (which
  then looks for work again before it ends) or starts a new one; a day with work
  left is always watched (the watchdog restarts a chain that broke anyway);
- a poison batch: a batch that fails in a way its task does not expect (not in
  its `throws`) counts a failure for each of its stations; the next batch of that
  segment is halved for each failure its first station has seen, down to one
  station, and a single station that fails again is set aside (`set_aside`) with
  the reason. The rest of the day goes on.

Built to be extended (chapter 4): a `Loop` takes any tasks with the signature
(batch, day, **options); `Segment.take` decides how a batch is taken (a lease),
`next_step` what counts as work, `send` and `pause_after` are the places for
pacing, a shared rate limit or a pause after a 429, `continue_chain` where
another chain (chapter 4's helpers) goes on, `set_aside` where poison goes.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable, NamedTuple

import redis
from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_success

from ch02_segmented import stages
from workshop.celery_app import redis_client
from workshop.lua import Script, once
from workshop import progress

from . import keys, lock

# Message headers a loop puts on each batch it sends (read back from task.request.headers).
NAME, DAY, OWNER, CHAIN, TURN = "loop_name", "loop_day", "loop_owner", "loop_chain", "loop_turn"
LEAD = "0"          # the loop's own chain; chapter 4's helpers are chains "1", "2", ...
POISON_AFTER = 2    # failures of a batch of one station before it is set aside

LOCK_TTL_ENV = "CH03_LOCK_TTL"
DEFAULT_LOCK_TTL = 15.0   # seconds; must outlast the longest batch (API timeout + time in the queue)
FAILURE_PAUSE = 0.25      # seconds before the batch after a failed one (chapter 4: backoff, Retry-After)
REPORT_EVERY = 0.25       # seconds: a process writes the progress counters at most this often (and at the end)


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


def _batch(args) -> list[str]:
    """The batch of a batch task's (batch, day, ...) arguments."""
    return list(args[0]) if args and isinstance(args[0], (list, tuple)) else []


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


class Turn(NamedTuple):
    """Where a message stands in its loop: its chain, its number in that chain, its task id."""

    chain: str = LEAD
    number: int = 0
    task_id: str = ""

    @classmethod
    def of(cls, request) -> "Turn":
        headers = request.headers or {}
        return cls(str(headers.get(CHAIN, LEAD)), int(headers.get(TURN, 0)), request.id or "")

    def next(self) -> "Turn":
        """The turn after this one: the next message of the chain, with a task id of its own."""
        return Turn(self.chain, self.number + 1, str(uuid.uuid4()))

    def headers(self) -> dict:
        return {CHAIN: self.chain, TURN: self.number}


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


class Loop:
    def __init__(self, name: str, segments: tuple[Segment, ...] | list[Segment],
                 failure_pause: float = FAILURE_PAUSE):
        self.name, self.segments, self.failure_pause = name, tuple(segments), failure_pause
        self._reported: dict[str, float] = {}   # day -> when this process last wrote its progress
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
            segment, batch = self.segment_of(sender), _batch(request.args)
            if segment is not None and batch and self.counts_failures(segment):
                redis_client().hdel(self.keys(request.headers[DAY]).failures,
                                    *[f"{segment.name}:{station}" for station in batch])
            self._carry_on(request, countdown=0.0)

    def on_failure(self, sender: Task, exception: BaseException | None = None, task_id: str | None = None,
                   args=(), **_) -> None:
        """task_failure: the error log has it (error_log.py); the loop goes on after a pause.

        In the pool process, the request is the failed task's. A hard time limit kills the
        pool process instead: Celery then sends task_failure from the worker's main process,
        without the request (no headers), and the chain is found by its task id.
        """
        request = sender.request
        segment = self.segment_of(sender)
        if self._ours(request):
            self.count_failure(redis_client(), request.headers[DAY], segment, _batch(request.args), exception)
            self._carry_on(request, countdown=self.pause_after(exception))
        elif not request.headers and isinstance(exception, TimeLimitExceeded) and len(args) > 1:
            self.after_time_limit(segment, _batch(args), args[1], task_id or "", exception)

    def pause_after(self, exception: BaseException | None) -> float:
        """Seconds to wait before the next batch after a failed one."""
        return self.failure_pause

    def _ours(self, request) -> bool:
        return (request.headers or {}).get(NAME) == self.name

    def _carry_on(self, request, countdown: float) -> None:
        headers = request.headers
        self.continue_chain(redis_client(), headers[DAY], headers[OWNER], Turn.of(request), countdown)

    def continue_chain(self, r: redis.Redis, day: str, owner: str, turn: Turn, countdown: float = 0.0) -> str:
        """The next turn of the chain `turn` belongs to; here there is one chain, the loop's own."""
        return self.advance(r, day, owner, countdown, turn)

    def after_time_limit(self, segment: Segment | None, batch: list[str], day: str, task_id: str,
                         exception: BaseException) -> None:
        """A batch killed by its hard time limit (worker's main process): count it, continue its chain."""
        r, k = redis_client(), self.keys(day)
        found, owner = lock.chain_of(r, k.turns, task_id), lock.owner(r, k.lock)
        if found is None or owner is None:
            return   # not a turn of the loop running now
        self.count_failure(r, k.day, segment, batch, exception)
        chain, number = found
        self.continue_chain(r, k.day, owner, Turn(chain, number, task_id), self.pause_after(exception))

    def segment_of(self, task: Task) -> Segment | None:
        return next((segment for segment in self.segments if segment.task.name == task.name), None)

    # ---------------------------------------------------------------- poison

    def counts_failures(self, segment: Segment) -> bool:
        """Whether a failed batch of `segment` counts towards setting its stations aside (all, here)."""
        return True

    def count_failure(self, r: redis.Redis, day: str, segment: Segment | None, batch: list[str],
                      exception: BaseException | None) -> None:
        """A batch failed unexpectedly: one failure per station; a lone station failing again is set aside.

        An expected failure (in the task's `throws`, e.g. BatchFailed: the API's bad moment) counts
        nothing: it is retried as it is. A count sent twice by a retried command only halves a batch
        once more: harmless.
        """
        if segment is None or not batch or not self.counts_failures(segment) \
                or isinstance(exception, tuple(segment.task.throws or ())):
            return
        k = self.keys(day)
        with r.pipeline(transaction=False) as p:
            for station in batch:
                p.hincrby(k.failures, f"{segment.name}:{station}", 1)
            failures = p.execute()
        if len(batch) == 1 and failures[0] >= POISON_AFTER:
            self.set_aside(r, k, segment, batch[0], f"{type(exception).__name__}: {exception}"[:300],
                           failures[0])

    def set_aside(self, r: redis.Redis, k: keys.LoopKeys, segment: Segment, station: str, why: str,
                  failures: int) -> None:
        """Take a poison station out of its segment's stage, with why, so the rest of the day goes on."""
        with r.pipeline() as p:
            p.hset(k.poison, station, json.dumps({"segment": segment.name, "detail": why,
                                                  "failures": failures, "at": time.time()}))
            p.zrem(getattr(k.segments, segment.source), station)
            p.hdel(k.failures, f"{segment.name}:{station}")
            p.execute()

    def poison(self, r: redis.Redis, day=None) -> dict[str, dict]:
        """The stations set aside: station -> {segment, detail, failures, at}."""
        return {station: json.loads(raw) for station, raw in r.hgetall(self.keys(day).poison).items()}

    # ---------------------------------------------------------------- one turn

    def next_step(self, r: redis.Redis, day) -> Step | None:
        """The next batch: a batch of the first segment, in order, that has work; None when none has.

        A batch is halved for each failure its first station has seen (poison is searched for
        by bisection: the half that succeeds moves on, the one that fails is halved again).
        """
        k = self.keys(day)
        for segment in self.segments:
            if not self.takes_work(r, k.day, segment):
                continue
            take = segment.take or stages.first
            size = segment.batch_size()
            batch = take(r, getattr(k.segments, segment.source), size)
            if batch and self.counts_failures(segment):
                failed = int(r.hget(k.failures, f"{segment.name}:{batch[0]}") or 0)
                batch = batch[:max(1, size >> failed)]
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

    def report_due(self, day: str) -> bool:
        """Whether this turn writes the progress counters: at most every REPORT_EVERY s per process, as
        progress bars read them (two round trips a turn would be a fifth of what a turn costs Redis)."""
        now = time.monotonic()
        if now - self._reported.get(day, -REPORT_EVERY) < REPORT_EVERY:
            return False
        self._reported[day] = now
        return True

    def report(self, r: redis.Redis, k: keys.LoopKeys) -> None:
        """Progress counters per segment: the stations past it, out of every discovered station."""
        sets = k.segments
        with r.pipeline(transaction=False) as p:
            p.zcard(sets.stations)
            for segment in self.segments:
                p.zcard(getattr(sets, segment.source))
            total, *waiting = p.execute()
        with r.pipeline(transaction=False) as p:
            for i, segment in enumerate(self.segments):
                p.hset(k.progress(segment.name), mapping={"total": total, "failed": 0,
                                                          "done": max(0, total - sum(waiting[:i + 1]))})
            p.execute()

    # ---------------------------------------------------------------- start, kick, stop

    def begin(self, r: redis.Redis, k: keys.LoopKeys, options: dict) -> None:
        """A new loop's bookkeeping: its options, not finished, no turns taken, watched by the watchdog."""
        with r.pipeline() as p:
            given = {name: value for name, value in options.items() if value is not None}
            if given:
                p.hset(k.options, mapping=given)
            p.delete(k.finished, k.kicked, k.turns)
            p.sadd(self.watched, k.day)
            p.execute()

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
                "stop_switch": r.get(k.stop),
                "finished": self.finished(r, k.day), "restarts": int(r.get(k.restarts) or 0),
                "chains": {chain: int(n) for chain, n in r.hgetall(k.turns).items() if ":" not in chain},
                "set_aside": r.hlen(k.poison),
                "work": {s.name: stages.count(r, getattr(sets, s.source)) for s in self.segments}}

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
        r.delete(k.lock, k.stop, k.options, k.finished, k.restarts, k.turns, k.kicked, k.failures, k.poison,
                 *[k.progress(segment.name) for segment in self.segments])
        r.srem(self.watched, k.day)
