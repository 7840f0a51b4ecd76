"""Retries: which failures deserve another try, how long to wait before it, and when to give up.

- 5xx, a timeout, a refused connection: the API's bad moment, worth retrying;
  after MAX_ATTEMPTS failed attempts a station goes to the dead-letter hash.
- A malformed body (not JSON, readings missing), a 4xx other than 429: asking
  again will not help; the batch's stations are dead-lettered at once, with the reason.
- A 429 is not a failure of the batch: the loop pauses (see pause.py) and the
  batch tries again when the pause ends, without counting an attempt.
- Our own faults are not the API's: the limiter too slow for a task's wait, the
  soft time limit: retried with backoff like a 5xx, counted, with their true reason.

An attempt is counted when a delivery is *received* (`count_delivery`, called from
deliveries.py in the worker's main process), not when it fails, nor when its body
starts: a batch that kills its pool process (before its body even starts: an OOM
while deserialising, a crashing C extension, a prerun handler), or hits the hard
time limit, never gets to say it failed, and would otherwise be delivered again for
ever. Its cause is "worker lost" until the delivery says better (an API error, a time
limit); a settle forgets both. A station whose fetch was delivered MAX_ATTEMPTS times
without settling is dead-lettered at its next receipt, with the last cause. A batch
comes back in halves when it did not settle (leases.py), so the station that kills
its process or hangs is found and dead-lettered alone. The body (`start_attempt`)
only fetches what its message still holds. The price: a delivery that a worker
received but never ran (a warm shutdown hands its prefetched and countdown messages
back) counts too; MAX_ATTEMPTS counts deliveries, not requests.

Why not Celery's own `autoretry_for` / `retry_backoff`: they count retries per
message, and a batch that comes back halved is a new message; here attempts are
counted per station, across messages, and survive a crash of the worker. And
Celery's backoff is in whole seconds; this one is not.

The wait before a retry is capped exponential backoff with full jitter
(uniform between 0 and min(CAP, BASE * 2**(attempt - 1))): retries of batches that
failed together spread out instead of hitting the API together again.

What these numbers buy, exactly: MAX_ATTEMPTS = 3 means two retries, waiting at
most 0.5 s then 1 s, so a station is dead-lettered within about 1.5 s of its first
failure (plus the requests' own time); CAP is never reached. That fits the fake
API, whose faults are drawn per request, and a station whose requests always fail.
A real API that is down for a minute is not the stations' fault: after a few
failures in a row across different batches the circuit breaker opens
(circuit.py), pauses every worker and probes the API with one request at growing
intervals; attempts made while it is open do not count, so nothing is
dead-lettered for the outage, and the day goes on once the API answers.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from typing import Callable, NamedTuple

import redis

from workshop.lua import Script
import requests
from celery.exceptions import SoftTimeLimitExceeded

from .keys import Keys
from .limiter import LimiterTimeout

BASE = 0.5          # seconds: the first retry waits up to this
CAP = 8.0           # seconds: no retry waits longer (well below the broker's visibility timeout)
MAX_ATTEMPTS = 3    # failed attempts before a station is dead-lettered

RETRYABLE = ("5xx", "timeout", "unreachable", "time limit", "limiter timeout")
DELIVERY_TTL = 3600  # seconds a receipt's "counted" mark is kept: longer than any retry of its script


class Failure(NamedTuple):
    reason: str      # "5xx", "timeout", "unreachable", "malformed", "http-4xx", "time limit",
                     # "limiter timeout", "worker lost", "unexpected" or "poison"
    detail: str      # what happened, for a person
    retryable: bool

    def cause(self, by: str | None = None) -> str:
        """The JSON recorded as a station's cause of its last failed attempt (`by`: the delivery's token)."""
        return json.dumps({"reason": self.reason, "detail": self.detail, **({"by": by} if by else {})})


WORKER_LOST = Failure("worker lost", "the delivery never finished: its pool process died (killed, out of memory) "
                                     "or the whole worker went away", False)


def backoff(attempt: int, base: float = BASE, cap: float = CAP,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): full jitter under a capped exponential."""
    return rng() * min(cap, base * 2 ** (max(1, attempt) - 1))


def classify(error: Exception) -> Failure:
    """What kind of failure `error` is, from the exceptions requests raises and a JSON body that is not one."""
    response = getattr(error, "response", None)
    if isinstance(error, SoftTimeLimitExceeded):
        return Failure("time limit", "the task ran into its soft time limit", True)
    if isinstance(error, LimiterTimeout):
        return Failure("limiter timeout", str(error)[:200], True)
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


# KEYS: holders, in flight, attempts, causes, dead letters, the receipt's mark, pending, the message's "received
# holding nothing" mark; ARGV[1] token, ARGV[2] MAX_ATTEMPTS, ARGV[3] the provisional cause (JSON, "by" this token),
# ARGV[4] now, ARGV[5] the marks' TTL, ARGV[6] "<task id>:" (any message of the task), ARGV[7..] stations.
# Returns {held, dead-lettered, released, drop (0 or 1)}. Counted once per receipt: run again (redis-py's retry
# after a lost reply), it changes nothing more and returns its first answer, kept in the receipt's mark.
_RECEIVE = """
local first = redis.call('GET', KEYS[6])
if first then return cjson.decode(first) end
local holders = redis.call('HMGET', KEYS[1], unpack(ARGV, 7))   -- one read per hash for the whole batch
local causes = redis.call('HMGET', KEYS[4], unpack(ARGV, 7))
local held, held_causes, died_before = {}, {}, false
for i = 7, #ARGV do
  if holders[i - 6] == ARGV[1] then
    held[#held + 1] = ARGV[i]
    held_causes[#held] = causes[i - 6]
    if causes[i - 6] and cjson.decode(causes[i - 6]).by == ARGV[1] then died_before = true end
  end
end
local answer
if not held[1] then
  -- a stale message: it runs, finds nothing, ends. Back again holding nothing, it died doing so: drop it.
  local again = not redis.call('SET', KEYS[8], '1', 'NX', 'EX', tonumber(ARGV[5]))
  answer = {{}, {}, {}, again and 1 or 0}
elseif died_before and #held > 1 then
  -- this very message died before: give its stations back, to be leased in halves
  for _, station in ipairs(held) do
    redis.call('ZREM', KEYS[2], station)
    redis.call('HDEL', KEYS[1], station)
    redis.call('ZADD', KEYS[7], 0, station)
  end
  answer = {{}, {}, held, 1}
else
  local go, buried, counts, provisional = {}, {}, {}, {}
  local attempts = redis.call('HMGET', KEYS[3], unpack(held))
  for i, station in ipairs(held) do
    local n = tonumber(attempts[i] or '0')
    if n >= tonumber(ARGV[2]) then
      local cause = cjson.decode(held_causes[i] or ARGV[3])
      redis.call('ZREM', KEYS[2], station)
      redis.call('HDEL', KEYS[1], station)
      redis.call('HDEL', KEYS[4], station)
      redis.call('HDEL', KEYS[3], station)
      redis.call('HSET', KEYS[5], station, cjson.encode(
        {reason = cause.reason, detail = cause.detail, attempts = n, at = tonumber(ARGV[4])}))
      buried[#buried + 1] = station
    else
      go[#go + 1] = station
      counts[#counts + 1] = station
      counts[#counts + 1] = n + 1
      provisional[#provisional + 1] = station
      provisional[#provisional + 1] = ARGV[3]
    end
  end
  if go[1] then   -- one HSET per hash: each station's count one up, its cause "worker lost" until it says better
    redis.call('HSET', KEYS[3], unpack(counts))
    redis.call('HSET', KEYS[4], unpack(provisional))
  end
  answer = {go, buried, {}, go[1] and 0 or 1}
end
if answer[4] == 1 then
  -- never drop while a retry of this task (same id, another token) holds any of the batch: it runs
  for i = 7, #ARGV do
    local holder = redis.call('HGET', KEYS[1], ARGV[i])
    if holder and holder ~= ARGV[1] and string.sub(holder, 1, #ARGV[6]) == ARGV[6] then answer[4] = 0 end
  end
end
redis.call('SET', KEYS[6], cjson.encode(answer), 'EX', tonumber(ARGV[5]))
return answer
"""


class Receipt(NamedTuple):
    """What a delivery of a leased batch holds once received: `held` to fetch; `buried` were dead-lettered,
    `released` given back to pending; `drop`: it holds nothing and never will, the worker may discard it."""

    held: list[str]
    buried: list[str]
    released: list[str]
    drop: bool


def count_delivery(r: redis.Redis, k: Keys, batch: list[str], holder: str, receipt: str | None = None) -> Receipt:
    """A delivery of `holder`'s batch was received (deliveries.py, in the worker's main process): count it.

    Only the stations `holder` holds count (a stale message gets nothing). Each counts one
    attempt, with "worker lost" as its cause until the delivery records a truer one; one already
    at MAX_ATTEMPTS is dead-lettered with its last cause instead. A batch of several whose last
    delivery of this same message died (the cause still "worker lost", by us) is given back to
    pending instead: the loop leases it again in halves (leases.py), to find the station that
    kills its process, which is then dead-lettered alone.

    `drop` when the message holds nothing after this receipt (it gave back or buried all it held,
    or it came back holding nothing a second time) and no retry of its task holds any of the batch.
    `receipt` (one id per receipt; default: a new one) makes the script count once, and answer
    the same, even if redis-py sends it twice.
    """
    if not batch:
        return Receipt([], [], [], False)
    task_id = holder.rsplit(":", 1)[0]
    held, buried, released, drop = _RECEIVE_SCRIPT(
        r,
        keys=[k.holders, k.in_flight, k.attempts, k.causes, k.dead_letters,
              k.delivery(receipt or uuid.uuid4().hex), k.pending, k.delivery(f"{holder}:empty")],
        args=[holder, MAX_ATTEMPTS, WORKER_LOST.cause(by=holder), time.time(), DELIVERY_TTL, f"{task_id}:", *batch])
    return Receipt(list(held), list(buried), list(released), bool(drop))


# KEYS: holders, in flight; ARGV[1] token, ARGV[2] the lease from now (ms, on Redis's clock; 0: unchanged),
# ARGV[3..] stations. Returns the stations the token holds.
_START = """
if #ARGV < 3 then return {} end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])   -- whole ms (leases._deadline)
local holders = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
local held, deadlines = {}, {}
for i = 3, #ARGV do
  if holders[i - 2] == ARGV[1] then
    held[#held + 1] = ARGV[i]
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = ARGV[i]
  end
end
if held[1] and tonumber(ARGV[2]) > 0 then redis.call('ZADD', KEYS[2], 'XX', unpack(deadlines)) end
return held
"""


_RECEIVE_SCRIPT, _START_SCRIPT = Script(_RECEIVE), Script(_START)


def start_attempt(r: redis.Redis, k: Keys, batch: list[str], holder: str, lease: float | None = None) -> list[str]:
    """A delivery of `holder`'s batch starts (the task body): the stations it still holds, to fetch now.

    The attempt was counted when the delivery was received (`count_delivery`); here a stale
    message, or one whose receipt gave back or buried its stations, finds nothing. `lease`: the
    stations to fetch hold their lease for that many seconds from now (enough for the request
    that follows); None leaves the lease as it is.
    """
    if not batch:
        return []
    script, keys, args = start_call(k, batch, holder, lease)
    return list(script(r, keys, args))


def start_call(k: Keys, batch: list[str], holder: str, lease: float | None = None) -> tuple:
    """`start_attempt`'s script call, to send with others in one round trip (workshop.lua.pipelined)."""
    return _START_SCRIPT.call(keys=[k.holders, k.in_flight],
                              args=[holder, max(1, int(lease * 1000)) if lease is not None else 0, *batch])


# KEYS[1] holders, KEYS[2] causes; ARGV[1] the holder's token, ARGV[2] the cause (JSON), ARGV[3..] stations.
# Only stations the token still holds: a stale message never overwrites the cause of another holder's attempt.
_RECORD_CAUSE = """
local n = 0
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[2])
    n = n + 1
  end
end
return n
"""


_RECORD_CAUSE_SCRIPT = Script(_RECORD_CAUSE)


def record_cause(r: redis.Redis, k: Keys, stations: list[str], failure: Failure, holder: str) -> int:
    """Why `holder`'s current attempt of `stations` failed: the reason they are dead-lettered with, if it comes
    to that. Only for the stations `holder` still holds; how many."""
    if not stations:
        return 0
    return int(_RECORD_CAUSE_SCRIPT(r, keys=[k.holders, k.causes], args=[holder, failure.cause(), *stations]))


def attempts_of(r: redis.Redis, k: Keys, batch: list[str]) -> dict[str, int]:
    """station -> its attempts so far (this delivery's included)."""
    return {station: int(n or 0) for station, n in zip(batch, r.hmget(k.attempts, batch))} if batch else {}


def attempts(r: redis.Redis, k: Keys) -> dict[str, int]:
    """station -> unsettled attempts so far (a station settles with its attempts forgotten)."""
    return {station: int(n) for station, n in r.hgetall(k.attempts).items()}
