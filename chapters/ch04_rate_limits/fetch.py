# Exercise copy of solutions/ch04_rate_limits/fetch.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The fetch step, within the limits and through failures.

One batch, one API request, and everything around it:

    (on receipt, in the worker's main process: deliveries.py) each station the message holds counts one
      delivery; one delivered MAX_ATTEMPTS times already is dead-lettered instead
    start the attempt: only the stations this message still holds (a stale message: nothing, it ends)
    ask the limiter (wait, keeping the lease and the loop's lock alive) -> request
      (the start and the limiter's first answer: one round trip to Redis, a pipeline of both scripts)
      200              -> settle: readings stored, lease released, ids to fetched (one script, in one
                          round trip with the circuit's "the API answered")
      429              -> follow the API's limit, pause every worker for Retry-After, ask again;
                          after MAX_429_ROUNDS of those, retry later (countdown: Retry-After), attempt not counted
      5xx, timeout     -> retry with backoff, or dead-letter after MAX_ATTEMPTS; unless the circuit is open
                          (circuit.py: the API is down): then retry after its pause, attempt not counted
      limiter too slow,
      soft time limit  -> the same: retried with backoff, dead-lettered after MAX_ATTEMPTS with that reason
      malformed, 4xx   -> dead-letter at once, with the reason
      no limit set     -> our configuration, not the API: the stations go back to pending uncounted, the
                          loop stops (its stop switch says why) and the task fails with what to configure
      GiveBack         -> raised by the call (chapter 5: the run's budget is spent): the stations go back to
                          pending uncounted, the task ends normally, the loop goes on
      anything else    -> (a bug) dead-letter the stations at MAX_ATTEMPTS ("unexpected"), re-raise

For the API's answers, the task ends in "done" or "dead-lettered" for its batch,
or in a retry (a new message with a countdown, to which the lease is handed
over). A bug is re-raised, on purpose: it must be loud (task_failure, the loop's
error log), and the stations must not cycle for ever either: they keep their
lease until the reaper hands them back for another counted try. What kills the
task without a word from it (its pool process killed, the hard time limit) was
counted when the delivery was received, so it too ends in a dead letter, "worker lost"
or "time limit" (recorded by the loop's handler in the worker's main process);
and such a batch comes back in halves, so only the station at fault is buried.
Unless the whole API is down: then every batch fails, the circuit opens
(circuit.py), every worker waits for its probe, and no attempt counts meanwhile.
Giving up touches only the stations this message still holds: one that another
holder settled after our lease expired is never both done and dead-lettered.

The same body runs without the global limiter, as Celery's own per-worker
`rate_limit` would: the notebook and the benchmark compare the two.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from workshop.celery_app import redis_client
from workshop.lua import Script, call_mark, once, pipelined
from ch02_segmented.fetch import API_ERRORS
from ch02_segmented.keys import RAW_TTL
from ch03_signals import keys as loop_keys, lock as ch03_lock, loop as ch03_loop
from workshop import settings as settings_mod

from . import circuit, client, dead_letters, leases, limiter, pause, retries, safety
from .keys import Keys, for_day

LEASE_ENV = "CH04_LEASE"
DEFAULT_LEASE = 30.0   # seconds a batch may sit unattended (queued, or its worker gone) before it is reaped
# 429s a task waits out itself (pause, ask again); at the next one it retries later instead.
# Two pauses of at most retry_after.LONGEST still fit in the task's time limit.
MAX_429_ROUNDS = 2
BACK_AFTER_PAUSE = 0.1   # seconds at least before a retry the open circuit sent back (its pause may be over)


class GiveBack(Exception):
    """The call refuses to go to the API now, for a reason that is ours, not the stations' (chapter 5: the
    budget): the batch goes back to pending, uncounted, and the task ends normally."""


def lease_seconds() -> float:
    """The lease in seconds: CH04_LEASE, read at call time (tests lower it to see the reaper work)."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_LEASE
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{LEASE_ENV}={raw!r} is not valid: expected a number of seconds above 0; "
                         f"set it to such a value or unset it to use the default {DEFAULT_LEASE:g}.")
    return value


# KEYS: in flight, pending, fetched, transformed, persisted, dead letters, holders, attempts, causes,
# then raw:<station> per station. ARGV: the raw TTL, the holder's token, then station, readings (JSON) per station.
# Only stations the token holds: a late duplicate settles nothing, and moves nothing further back.
# One command per key for the whole batch (HMGET, ZREM, HDEL, ZMSCORE, ZADD of many), not one per station:
# only the readings are one SET each (chapter 2's raw:<station>, each with its TTL).
_SETTLE = """
local stations = {}
for i = 10, #KEYS - 1 do stations[i - 9] = ARGV[2 * (i - 9) + 1] end   -- the last key is the call's own (once)
if not stations[1] then return 0 end
local holders = redis.call('HMGET', KEYS[7], unpack(stations))
local mine = {}
for i, station in ipairs(stations) do
  if holders[i] == ARGV[2] then
    redis.call('SET', KEYS[9 + i], ARGV[2 * i + 2], 'EX', tonumber(ARGV[1]))
    mine[#mine + 1] = station
  end
end
if not mine[1] then return 0 end
redis.call('ZREM', KEYS[1], unpack(mine))
redis.call('ZREM', KEYS[2], unpack(mine))
for key = 6, 9 do redis.call('HDEL', KEYS[key], unpack(mine)) end   -- dead letter, holder, attempts, cause
local transformed = redis.call('ZMSCORE', KEYS[4], unpack(mine))
local persisted = redis.call('ZMSCORE', KEYS[5], unpack(mine))
local fetched = {}   -- score, station, ...: the ones no later stage has yet
for i, station in ipairs(mine) do
  if not transformed[i] and not persisted[i] then
    fetched[#fetched + 1] = 0
    fetched[#fetched + 1] = station
  end
end
if fetched[1] then redis.call('ZADD', KEYS[3], unpack(fetched)) end
return #mine
"""
_SETTLE_SCRIPT = Script(once(_SETTLE))   # sent twice, it answers what it did the first time


def settle(r: redis.Redis, k: Keys, batch: list[str], readings: dict[str, list], holder: str) -> int:
    """Store the readings of the stations `holder` holds and move them from in flight to fetched, all
    at once, attempts forgotten; how many it held."""
    script, keys, args = settle_call(k, batch, readings, holder)
    return int(script(r, keys, args))


def settle_call(k: Keys, batch: list[str], readings: dict[str, list], holder: str) -> tuple:
    """`settle`'s script call, to send with others in one round trip (workshop.lua.pipelined)."""
    args = [RAW_TTL, holder]
    for station in batch:
        args += [station, json.dumps(readings[station])]
    return _SETTLE_SCRIPT.call(
        keys=[k.in_flight, k.pending, k.fetched, k.transformed, k.persisted, k.dead_letters,
              k.holders, k.attempts, k.causes, *[k.raw(station) for station in batch], call_mark(k.in_flight)],
        args=args)


def sender(day: str, headers: dict) -> loop_keys.LoopKeys | None:
    """The keys of the loop that sent this batch, from its headers; None for a batch sent by hand."""
    return loop_keys.for_day(headers[ch03_loop.NAME], day) if headers.get(ch03_loop.NAME) else None


def hold_loop(r: redis.Redis, day: str, headers: dict, seconds: float) -> None:
    """Keep the loop's lock for `seconds` + its TTL (never shorter): we only wait, the loop is alive."""
    loop = sender(day, headers)
    if loop is not None and headers.get(ch03_loop.OWNER):
        ch03_lock.hold(r, loop.lock, headers[ch03_loop.OWNER], int(seconds * 1000) + int(ch03_loop.lock_ttl() * 1000))


def keep_alive(r: redis.Redis, k: Keys, batch: list[str], holder: str, headers: dict) -> Callable[[float], None]:
    """A sleep for the limiter's waits that keeps the batch's lease and the loop's lock alive meanwhile.

    A pause can outlast both: without this, the reaper would hand the batch to
    another worker, and the watchdog would think the loop dead, while we only wait.
    """
    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = max(0.0, end - time.monotonic())
            leases.extend(r, k, batch, left + lease_seconds(), holder)
            hold_loop(r, k.day, headers, left)
            if left <= 0:
                return
            time.sleep(min(1.0, left))
    return sleep


def fetch(task: Task, batch: list[str], day: str, global_limit: bool = True,
          call: Callable[..., dict] | None = None) -> dict:
    """Fetch one leased batch; the body of the loop's fetch tasks (`task` is the bound task).

    `call(batch, day, settings)` makes the request: client.fetch (looked up at call time), or chapter 5's,
    which spends from a budget."""
    s = settings_mod.load()
    r, k = redis_client(), for_day(day)
    if len(batch) > s.api_max_batch:
        raise ValueError(f"a batch of {len(batch)} stations is more than the API's maximum of {s.api_max_batch}; "
                         "take batches of at most API_MAX_BATCH stations.")
    holder = leases.token_of(task.request)
    gate = limiter.GlobalLimiter(r) if global_limit else None
    # Start the attempt and ask the limiter in one round trip: the common case is a message that holds
    # its batch and a limiter that says go. A stale one's slot goes unused (a little slower, never over).
    start = retries.start_call(k, batch, holder, lease=s.request_timeout + lease_seconds())
    held, *asked = pipelined(r, start, *([gate.call(holder, s.request_timeout + lease_seconds())] if gate else []))
    if isinstance(held, Exception):
        raise held
    batch = list(held)
    if not batch:   # stale (settled, reaped or re-leased), or its receipt gave it back or dead-lettered it
        if asked and asked[0] == 0:
            circuit.not_probing(r, holder)   # had its slot been the open circuit's probe, it is the next one's
        return {"day": day, "done": 0, "dead": 0}
    try:
        return _fetch_leased(task, r, k, s, batch, holder, gate, call or client.fetch,
                             first=asked[0] if asked else None)
    except Retry:
        raise
    except GiveBack as why:
        leases.release(r, k, batch, holder, uncount=True)
        return {"day": day, "done": 0, "dead": 0, "given_back": len(batch), "why": str(why)}
    except limiter.NoLimitError as error:
        raise stop_for_configuration(r, k, batch, holder, task.request.headers or {}, error) from None
    except (SoftTimeLimitExceeded, limiter.LimiterTimeout) as error:   # ours, not the API's: retried, counted
        return retry_or_give_up(task, r, k, batch, holder, error)
    except Exception as error:   # a bug: give up on the spent stations, stay loud
        give_up_if_spent(r, k, batch, holder, error)
        raise


def _fetch_leased(task: Task, r: redis.Redis, k: Keys, s: settings_mod.Settings, batch: list[str], holder: str,
                  gate: limiter.GlobalLimiter | None, call: Callable[..., dict], first=None) -> dict:
    headers = task.request.headers or {}
    wait = keep_alive(r, k, batch, holder, headers)
    rounds = 0   # 429s waited out in this task
    while True:
        waited = gate.acquire(timeout=safety.ACQUIRE_TIMEOUT, sleep=wait, asker=holder,   # (the circuit's probe)
                              probe_for=s.request_timeout + lease_seconds(),
                              first=gate.answer(first) if first is not None else None) if gate is not None else 0.0
        first = None   # (the answer fetch asked with the start; any later round asks again)
        if waited or rounds:   # else the lease start_attempt just gave still covers the request
            leases.extend(r, k, batch, s.request_timeout + lease_seconds(), holder)
        try:
            readings = call(batch, k.day, s)
        except client.RateLimited as limited:
            circuit.succeeded(r, holder)   # an answer: the API is up
            if gate is not None:
                limiter.learn(r, limited.limit)
                pause.pause(r, limited.wait.seconds, why=f"429 for {batch[0]}..{batch[-1]}: Retry-After {limited.wait}")
                if rounds < MAX_429_ROUNDS:
                    rounds += 1
                    continue   # not an attempt: the batch did nothing wrong; wait the pause out and ask again
            # Per-worker limits know nothing of each other: this task alone backs off. And a task
            # refused again and again gives its worker back: a new message asks after Retry-After.
            raise retry_later(task, r, k, batch, holder, limited.wait.seconds, limited, uncount=True)
        except (*API_ERRORS, client.MalformedBody) as error:
            return retry_or_give_up(task, r, k, batch, holder, error)
        settled, closed = pipelined(r, settle_call(k, batch, readings, holder), circuit.succeeded_call(holder))
        if isinstance(settled, Exception):
            raise settled
        circuit.heard(closed)   # an answer: the API is up (one round trip with the settle)
        return {"day": k.day, "done": len(batch), "dead": 0}


def retry_later(task: Task, r: redis.Redis, k: Keys, stations: list[str], holder: str, countdown: float,
                error: Exception, uncount: bool = False) -> Retry:
    """The Retry to raise: the loop's lock held and the lease handed over to the retry's message first,
    both for the countdown and then some, so neither the watchdog nor the reaper takes them meanwhile."""
    hold_loop(r, k.day, task.request.headers or {}, countdown)
    successor = leases.token(task.request.id, (task.request.retries or 0) + 1)
    leases.hand_over(r, k, stations, holder, successor, countdown + lease_seconds(), uncount=uncount)
    return task.retry(countdown=countdown, exc=error)


def retry_or_give_up(task: Task, r: redis.Redis, k: Keys, batch: list[str], holder: str, error: Exception) -> dict:
    """A failed attempt: retry later (5xx, timeout, our own time limits) with backoff, or dead-letter it.

    Per station: those at MAX_ATTEMPTS (all of them, for a failure not worth
    retrying) are dead-lettered, if still ours; the others are retried. But first
    the circuit hears of it: open (this failure opened it, or the API was down
    already), the attempt is not the stations' fault: retried after its pause, uncounted.
    """
    failure = retries.classify(error)
    if circuit.counts(failure) or failure.reason == "limiter timeout":   # (a long wait: maybe the API is down)
        verdict = circuit.failed(r, failure, batch, holder)
        if verdict.open:
            retries.record_cause(r, k, batch, failure, holder)
            raise retry_later(task, r, k, batch, holder, max(verdict.wait, BACK_AFTER_PAUSE), error, uncount=True)
    attempts = retries.attempts_of(r, k, batch)
    spent = [st for st in batch if not failure.retryable or attempts[st] >= retries.MAX_ATTEMPTS]
    buried = dead_letters.bury(r, k, spent, failure, attempts, holder) if spent else []
    left = [st for st in batch if st not in spent]
    if left:
        retries.record_cause(r, k, left, failure, holder)
        raise retry_later(task, r, k, left, holder, retries.backoff(max(attempts[st] for st in left)), error)
    return {"day": k.day, "done": 0, "dead": len(buried), "reason": failure.reason}


def give_up_if_spent(r: redis.Redis, k: Keys, batch: list[str], holder: str, error: Exception) -> list[str]:
    """An unexpected failure: dead-letter the stations at MAX_ATTEMPTS; the others keep their lease,
    and the reaper hands them back when it expires. Returns the stations dead-lettered."""
    failure = retries.Failure("unexpected", f"{type(error).__name__}: {error}"[:200], False)
    retries.record_cause(r, k, batch, failure, holder)
    attempts = retries.attempts_of(r, k, batch)
    spent = [st for st, n in attempts.items() if n >= retries.MAX_ATTEMPTS]
    return dead_letters.bury(r, k, spent, failure, attempts, holder) if spent else []


def stop_for_configuration(r: redis.Redis, k: Keys, batch: list[str], holder: str, headers: dict,
                           error: limiter.NoLimitError) -> limiter.NoLimitError:
    """No limit configured: not the stations' fault. Back to pending uncounted, the loop stopped with
    the reason (its status shows it); the error to raise says what to configure."""
    leases.release(r, k, batch, holder, uncount=True)
    why = f"the loop stopped: {error}"
    loop = sender(k.day, headers)
    if loop is not None:
        r.set(loop.stop, why)
    return limiter.NoLimitError(why)
