"""The fetch step, within the limits and through failures.

One batch, one API request, and everything around it:

    ask the limiter (wait, keeping the lease and the loop's lock alive) -> request
      200              -> settle: readings stored, lease released, ids to fetched (one script)
      429              -> follow the API's limit, pause every worker for Retry-After, ask again;
                          after MAX_429_ROUNDS of those, retry later (countdown: Retry-After), no attempt counted
      5xx, timeout     -> count an attempt; retry with backoff, or dead-letter after MAX_ATTEMPTS
      malformed, 4xx   -> dead-letter at once, with the reason
      anything else    -> (a bug, the limiter timing out, the soft time limit, ...) count an attempt,
                          dead-letter the stations that reached MAX_ATTEMPTS ("unexpected"), and re-raise

For the API's answers, the task ends in "done" or "dead-lettered" for its batch,
or in a retry (a new message with a countdown). Anything else is re-raised, on
purpose: a bug must be loud (task_failure, the loop's error log), and the
stations must not cycle for ever either. So the failure counts an attempt for
each station still leased, those at MAX_ATTEMPTS are dead-lettered with reason
"unexpected" (the detail says which exception), and the others keep their
lease until the reaper hands them back for another try. Only Celery's hard
time limit kills the task without a word from it: the soft one (tasks.py) comes first.
Giving up touches only the stations still in flight: one that another holder
settled after our lease expired is never both done and dead-lettered.

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
from celery.exceptions import Retry

from workshop.celery_app import redis_client
from ch02_segmented.fetch import API_ERRORS
from ch02_segmented.keys import RAW_TTL
from ch03_signals import keys as loop_keys, lock as loop_lock, loop as ch03_loop
from workshop import settings as settings_mod

from . import client, dead_letters, leases, limiter, pause, retries, safety
from .keys import Keys, for_day

LEASE_ENV = "CH04_LEASE"
DEFAULT_LEASE = 30.0   # seconds a batch may sit unattended (queued, or its worker gone) before it is reaped
# 429s a task waits out itself (pause, ask again); at the next one it retries later instead.
# Two pauses of at most retry_after.LONGEST still fit in the task's time limit.
MAX_429_ROUNDS = 2


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


# KEYS: in flight, pending, fetched, transformed, persisted, dead letters, then raw:<station> per station.
# ARGV: the raw TTL, then station, readings (JSON) per station.
# A late duplicate (a batch delivered twice) writes the same readings and moves nothing further back.
_SETTLE = """
for i = 7, #KEYS do
  local station = ARGV[2 * (i - 6)]
  redis.call('SET', KEYS[i], ARGV[2 * (i - 6) + 1], 'EX', tonumber(ARGV[1]))
  redis.call('ZREM', KEYS[1], station)
  redis.call('SREM', KEYS[2], station)
  redis.call('HDEL', KEYS[6], station)
  if redis.call('SISMEMBER', KEYS[4], station) == 0 and redis.call('SISMEMBER', KEYS[5], station) == 0 then
    redis.call('SADD', KEYS[3], station)
  end
end
return #KEYS - 6
"""


def settle(r: redis.Redis, k: Keys, batch: list[str], readings: dict[str, list]) -> int:
    """Store the batch's readings and move its ids from in flight to fetched, all at once: idempotent."""
    args = [RAW_TTL]
    for station in batch:
        args += [station, json.dumps(readings[station])]
    return int(r.register_script(_SETTLE)(
        keys=[k.in_flight, k.pending, k.fetched, k.transformed, k.persisted, k.dead_letters,
              *[k.raw(station) for station in batch]], args=args))


def keep_alive(r: redis.Redis, k: Keys, batch: list[str], headers: dict) -> Callable[[float], None]:
    """A sleep for the limiter's waits that keeps the batch's lease and the loop's lock alive meanwhile.

    A pause can outlast both: without this, the reaper would hand the batch to
    another worker, and the watchdog would think the loop dead, while we only wait.
    """
    owner, loop_name = headers.get(ch03_loop.OWNER), headers.get(ch03_loop.NAME)
    lock_key = loop_keys.for_day(loop_name, k.day).lock if owner and loop_name else None

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            leases.extend(r, k, batch, max(0.0, left) + lease_seconds())
            if lock_key:
                loop_lock.refresh(r, lock_key, owner, int(ch03_loop.lock_ttl() * 1000))
            if left <= 0:
                return
            time.sleep(min(1.0, left))
    return sleep


def still_leased(r: redis.Redis, k: Keys, batch: list[str]) -> list[str]:
    """The stations of `batch` still in flight: a message delivered twice finds its batch settled."""
    with r.pipeline(transaction=False) as p:
        for station in batch:
            p.zscore(k.in_flight, station)
        return [station for station, deadline in zip(batch, p.execute()) if deadline is not None]


def fetch(task: Task, batch: list[str], day: str, global_limit: bool = True) -> dict:
    """Fetch one leased batch; the body of the loop's fetch tasks (`task` is the bound task)."""
    s = settings_mod.load()
    r, k = redis_client(), for_day(day)
    if len(batch) > s.api_max_batch:
        raise ValueError(f"a batch of {len(batch)} stations is more than the API's maximum of {s.api_max_batch}; "
                         "take batches of at most API_MAX_BATCH stations.")
    batch = still_leased(r, k, batch)
    if not batch:   # a message delivered again after its batch was done (or reaped): nothing to do
        return {"day": day, "done": 0, "dead": 0}
    try:
        return _fetch_leased(task, r, k, s, batch, day, global_limit)
    except Retry:
        raise
    except Exception as error:   # not the API's answer: count it, give up on the spent stations, stay loud
        give_up_if_spent(r, k, batch, error)
        raise


def _fetch_leased(task: Task, r: redis.Redis, k: Keys, s: settings_mod.Settings, batch: list[str], day: str,
                  global_limit: bool) -> dict:
    gate = limiter.GlobalLimiter(r) if global_limit else None
    wait = keep_alive(r, k, batch, task.request.headers or {})
    rounds = 0   # 429s waited out in this task
    while True:
        if gate is not None:
            gate.acquire(timeout=safety.ACQUIRE_TIMEOUT, sleep=wait)
        leases.extend(r, k, batch, s.request_timeout + lease_seconds())
        try:
            readings = client.fetch(batch, day, s)
        except client.RateLimited as limited:
            if gate is not None:
                limiter.learn(r, limited.limit)
                pause.pause(r, limited.wait.seconds, why=f"429 for {batch[0]}..{batch[-1]}: Retry-After {limited.wait}")
                if rounds < MAX_429_ROUNDS:
                    rounds += 1
                    continue   # not an attempt: the batch did nothing wrong; wait the pause out and ask again
            # Per-worker limits know nothing of each other: this task alone backs off. And a task
            # refused again and again gives its worker back: a new message asks after Retry-After.
            leases.extend(r, k, batch, limited.wait.seconds + lease_seconds())
            raise task.retry(countdown=limited.wait.seconds, exc=limited)
        except (*API_ERRORS, client.MalformedBody) as error:
            return retry_or_give_up(task, r, k, batch, error)
        settle(r, k, batch, readings)
        return {"day": day, "done": len(batch), "dead": 0}


def retry_or_give_up(task: Task, r: redis.Redis, k: Keys, batch: list[str], error: Exception) -> dict:
    """A failed attempt: retry later (5xx, timeout) with backoff, or dead-letter with the reason.

    Per station: those at MAX_ATTEMPTS (all of them, for a failure not worth
    retrying) are dead-lettered, if still in flight; the others are retried.
    """
    failure = retries.classify(error)
    attempts = retries.count_failure(r, k, batch)
    spent = [st for st in batch if not failure.retryable or attempts[st] >= retries.MAX_ATTEMPTS]
    buried = dead_letters.bury(r, k, spent, failure, attempts) if spent else []
    left = [st for st in batch if st not in spent]
    if left:
        countdown = retries.backoff(max(attempts[st] for st in left))
        leases.extend(r, k, left, countdown + lease_seconds())   # the retry's message holds them
        raise task.retry(countdown=countdown, exc=error)
    return {"day": k.day, "done": 0, "dead": len(buried), "reason": failure.reason}


def give_up_if_spent(r: redis.Redis, k: Keys, batch: list[str], error: Exception) -> list[str]:
    """An unexpected failure: one more attempt for the stations still leased; dead-letter the spent ones.

    The others keep their lease, and the reaper hands them back when it expires.
    Returns the stations dead-lettered.
    """
    attempts = retries.count_failure(r, k, still_leased(r, k, batch))
    spent = [st for st, n in attempts.items() if n >= retries.MAX_ATTEMPTS]
    if not spent:
        return []
    failure = retries.Failure("unexpected", f"{type(error).__name__}: {error}"[:200], False)
    return dead_letters.bury(r, k, spent, failure, attempts)
