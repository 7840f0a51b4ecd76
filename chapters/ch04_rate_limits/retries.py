# Exercise copy of solutions/ch04_rate_limits/retries.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Retries: which failures deserve another try, how long to wait before it, and when to give up.

- 5xx, a timeout, a refused connection: the API's bad moment, worth retrying;
  after MAX_ATTEMPTS failed attempts a station goes to the dead-letter hash.
- A malformed body (not JSON, readings missing), a 4xx other than 429: asking
  again will not help; the batch's stations are dead-lettered at once, with the reason.
- A 429 is not a failure of the batch: the loop pauses (see pause.py) and the
  batch tries again when the pause ends, without counting an attempt.

The wait before a retry is capped exponential backoff with full jitter
(uniform between 0 and min(CAP, BASE * 2**(attempt - 1))): retries of batches that
failed together spread out instead of hitting the API together again.
"""
from __future__ import annotations

import random
from typing import Callable, NamedTuple

import redis
import requests

from .keys import Keys

BASE = 0.5          # seconds: the first retry waits up to this
CAP = 8.0           # seconds: no retry waits longer (well below the broker's visibility timeout)
MAX_ATTEMPTS = 3    # failed attempts before a station is dead-lettered

RETRYABLE = ("5xx", "timeout", "unreachable")


class Failure(NamedTuple):
    reason: str      # "5xx", "timeout", "unreachable", "malformed" or "http-4xx"
    detail: str      # what happened, for a person
    retryable: bool


def backoff(attempt: int, base: float = BASE, cap: float = CAP,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full jitter under a capped exponential."""
    return rng() * min(cap, base * 2 ** (max(1, attempt) - 1))


def classify(error: Exception) -> Failure:
    """What kind of failure `error` is, from the exceptions requests raises and a JSON body that is not one."""
    response = getattr(error, "response", None)
    if isinstance(error, requests.Timeout):
        return Failure("timeout", f"no answer in time ({type(error).__name__})", True)
    if isinstance(error, requests.ConnectionError):
        return Failure("unreachable", f"{type(error).__name__}: {error}"[:200], True)
    if isinstance(error, requests.HTTPError) and response is not None:
        status = response.status_code
        if status >= 500:
            return Failure("5xx", f"HTTP {status} {response.reason}", True)
        return Failure("http-4xx", f"HTTP {status} {response.reason}", False)
    if isinstance(error, (ValueError, KeyError, TypeError)):   # JSONDecodeError is a ValueError
        return Failure("malformed", f"the body is not the readings ({type(error).__name__}: {error})"[:200], False)
    return Failure("unexpected", f"{type(error).__name__}: {error}"[:200], False)


def count_failure(r: redis.Redis, k: Keys, batch: list[str]) -> dict[str, int]:
    """One more failed attempt for each station of the batch; returns station -> its attempts so far.

    Per station, not the most over the batch: a station that joined the batch
    later (brought back by the reaper) is not given up on for the others' attempts.
    """
    with r.pipeline() as p:
        for station in batch:
            p.hincrby(k.attempts, station, 1)
        return dict(zip(batch, p.execute()))


def attempts(r: redis.Redis, k: Keys) -> dict[str, int]:
    """station -> failed attempts so far (a station fetched on its first try is not in here)."""
    return {station: int(n) for station, n in r.hgetall(k.attempts).items()}
