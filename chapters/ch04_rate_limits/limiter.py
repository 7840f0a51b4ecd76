# Exercise copy of solutions/ch04_rate_limits/limiter.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""One rate limit for every worker on every host: GCRA in one Redis script.

Celery's own `rate_limit` is kept by each worker for itself: two workers with
`rate_limit="10/s"` send 20 requests a second to an API that allows 10. Here the
limit lives in Redis, and every worker asks the same script before each request.
The script

- reads the time from Redis (`TIME`), never from the worker: hosts' clocks
  disagree, the Redis has one clock;
- answers in one round trip: 0 means "go" (and the slot is taken), anything else
  is the milliseconds to wait; the worker sleeps that long and asks again, rather
  than fail the task and put it back in the queue;
- is atomic: two workers can never take the same slot;
- waits out a pause (a 429, pause.py) and, when the circuit breaker is open
  (circuit.py), lets one request through once the pause is over: the probe. The
  others wait for its answer, which closes the circuit or opens it again.
- is safe sent twice (redis-py re-sends after a lost reply): the repeat can only take
  one more slot, which nobody uses: a little slower, never over the limit.

GCRA (the generic cell rate algorithm) keeps one number per limit: the
theoretical arrival time (TAT), when the next request would be due if requests
came exactly at the rate. A request may go when it is at most `burst - 1`
intervals ahead of that time; each request that goes pushes the TAT one interval on.
That is a token bucket of `burst` tokens refilled at `rate`, without a refill loop.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import redis

from workshop import settings as settings_mod
from workshop.lua import Script

from .keys import API, ApiKeys

# Seconds a request may take from our "go" to the API's clock (network, a busy host):
# the limiter leaves that many seconds of burst unused in the API's bucket, so a
# request that arrives early or late still finds a token there.
JITTER = 0.5
RATE_MARGIN = 0.05   # where the burst is too small to trim (1 or 2): 5 % longer between requests


class Limit(NamedTuple):
    rate: float   # requests per second
    burst: int    # requests allowed back to back


class NoLimitError(RuntimeError):
    """The limiter was asked before anyone told it the API's limit."""


class LimiterTimeout(TimeoutError):
    """No slot within the time a task may wait; the message says how long it waited."""


def published_limit(settings: settings_mod.Settings | None = None) -> Limit:
    """The limit the API publishes in its documentation: API_RATE per second, bursts of API_BURST."""
    s = settings or settings_mod.load()
    return Limit(s.api_rate, s.effective_api_burst)


def with_headroom(published: Limit, jitter: float = JITTER) -> Limit:
    """What we enforce: the API's rate, and its burst less a cushion of `rate * jitter` requests, at most
    a bit under half the burst.

    The rate is not lowered (that would waste budget for good); only the burst
    is, so the API's bucket always keeps a few tokens for requests that reach it
    early, out of step with our clock. The cap keeps more than half the burst
    for ourselves: a bucket of two or more tokens lets a request that was late
    (a busy worker, a slow round trip) be made up by the next ones, where a
    bucket of one would lose the time for good. A burst of 1 or 2 has no cushion
    to spare: there the margin is taken in time instead, an interval
    RATE_MARGIN longer than the API's, so a request that arrives a little early
    still finds the API's token back.
    """
    cushion = min(math.ceil(published.rate * jitter), (published.burst - 1) // 2)
    if cushion or not jitter:
        return Limit(published.rate, published.burst - cushion)
    return Limit(published.rate * (1 - RATE_MARGIN), published.burst)


def configure(r: redis.Redis, published: Limit, name: str = API, jitter: float = JITTER) -> Limit:
    """Tell every worker the API's limit (kept in Redis); returns what the limiter enforces."""
    rate, burst = published
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a number of requests per second above 0, got {rate!r}.")
    if not (isinstance(burst, int) and burst >= 1):
        raise ValueError(f"burst must be a whole number of at least 1, got {burst!r}.")
    enforced = with_headroom(Limit(float(rate), burst), jitter)
    r.hset(ApiKeys(name).limit, mapping={"rate": enforced.rate, "burst": enforced.burst,
                                         "api_rate": float(rate), "api_burst": burst, "jitter": jitter})
    return enforced


def configure_published(r: redis.Redis, published: Limit, name: str = API, jitter: float = JITTER) -> Limit:
    """`configure` from the API's published limit, unless that is the one already configured.

    A limit learned since from `X-RateLimit-Limit` (see `learn`) is what the API
    enforces now: the next run must not put the published one back over it.
    So the limit is written only when none is stored or the published one changed.
    Returns what the limiter enforces.
    """
    k = ApiKeys(name)
    stored, known = r.hgetall(k.published), current(r, name)
    if known and stored and Limit(float(stored["rate"]), int(stored["burst"])) == \
            Limit(float(published.rate), published.burst):
        return Limit(known["rate"], known["burst"])
    enforced = configure(r, published, name, jitter)
    r.hset(k.published, mapping={"rate": float(published.rate), "burst": published.burst})
    return enforced


def current(r: redis.Redis, name: str = API) -> dict:
    """The limit in Redis: {rate, burst, api_rate, api_burst, jitter}, or {} before `configure`."""
    raw = r.hgetall(ApiKeys(name).limit)
    return {field: (int(float(value)) if "burst" in field else float(value)) for field, value in raw.items()}


def learn(r: redis.Redis, header: str | None, name: str = API) -> Limit | None:
    """Follow the API's `X-RateLimit-Limit` (its rate now) when it differs from the one we enforce.

    Every worker reads the limit from Redis, so one worker learning it is enough.
    Returns the new enforced limit, or None when nothing changed (or the header is junk).
    """
    try:
        rate = float(header)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(rate) and rate > 0):
        return None
    known = current(r, name)
    if known.get("api_rate") == rate:
        return None
    burst = known.get("api_burst") or max(1, math.ceil(rate))
    return configure(r, Limit(rate, burst), name, known.get("jitter", JITTER))


PROBE_FOR = 60.0   # seconds a probe holds the half-open circuit (fetch.py gives its request's timeout and then some)

# The part of the script that is not the algorithm: the clock, the pause, the probe, the limit.
# KEYS[1] the limiter's state (TAT), KEYS[2] the limit (hash), KEYS[3] the loop-wide pause, KEYS[4] the circuit
# (hash); ARGV[1] the asker's id (its lease token), ARGV[2] how long its probe may take (ms) before another asks.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000      -- ms, on Redis's clock
local paused_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused_until > now then
  return math.ceil(paused_until - now)                          -- a 429 or the circuit paused everyone: wait
end
local circuit = redis.call('HMGET', KEYS[4], 'state', 'probe', 'probe_until')
local probing = circuit[1] == 'open'                            -- open, its pause over: this request probes
if probing and circuit[2] and circuit[2] ~= ARGV[1] and tonumber(circuit[3]) > now then
  return math.ceil(math.min(tonumber(circuit[3]) - now, 250))   -- another's probe is out: look again soon
end
local limit = redis.call('HMGET', KEYS[2], 'rate', 'burst')
if not limit[1] or not limit[2] then
  return redis.error_reply('NOLIMIT the limiter has no limit')
end
local interval = 1000 / tonumber(limit[1])                        -- ms between requests at the rate
local burst = tonumber(limit[2])
"""


def gcra_core() -> str:
    """The algorithm, in Lua: with `now`, `interval` and `burst` known, answer 0 (go) or the ms to wait."""
    # exercise 4.1: return the Lua of GCRA: with the theoretical arrival time (TAT, in KEYS[1], ms) no more than a burst of intervals ahead of now, this request takes the next slot (TAT moves one interval on, the key expires once it is of no use) and the answer is 0; otherwise nothing changes and the answer is the ms until a slot frees (> 0)
    raise NotImplementedError("exercise 4.1: return the Lua of GCRA: with the theoretical arrival time (TAT, in KEYS[1], ms) no more than a burst of intervals ahead of now, this request takes the next slot (TAT moves one interval on, the key expires once it is of no use) and the answer is 0; otherwise nothing changes and the answer is the ms until a slot frees (> 0)")


# The slot granted to a request while the circuit is open: it is the probe, until its answer or ARGV[2] ms.
_EPILOGUE = """
local wait = gcra()
if wait == 0 and probing then
  redis.call('HSET', KEYS[4], 'probe', ARGV[1], 'probe_until', string.format('%.3f', now + tonumber(ARGV[2])))
end
return wait
"""


def gcra_script() -> str:
    return _PROLOGUE + "local function gcra()\n" + gcra_core() + "\nend\n" + _EPILOGUE


_GCRA = Script(gcra_script)   # made at its first call: gcra_core is exercise 4.1


class GlobalLimiter:
    """Ask before every request: `limiter.acquire()` returns once this worker may send one."""

    def __init__(self, r: redis.Redis, name: str = API):
        self.r, self.name, self.keys = r, name, ApiKeys(name)

    def check(self, asker: str = "", probe_for: float = PROBE_FOR) -> int:
        """One round trip: 0 means go (the slot is ours), otherwise milliseconds to wait.

        `asker` (a lease token) is who probes the API if the slot is the open circuit's probe; no one else
        asks until its answer, or for `probe_for` seconds (longer than a request may take).
        """
        try:
            answer = _GCRA(self.r, *self.call(asker, probe_for)[1:])
        except redis.ResponseError as error:
            answer = error
        return self.answer(answer)

    def call(self, asker: str = "", probe_for: float = PROBE_FOR) -> tuple:
        """`check`'s script call, to send in one round trip with others (workshop.lua.pipelined);
        its answer read by `answer`."""
        return _GCRA.call(keys=[self.keys.state, self.keys.limit, self.keys.pause, self.keys.circuit],
                          args=[asker, int(probe_for * 1000)])

    def answer(self, answer) -> int:
        """The script's answer as `check` gives it: 0 (go) or ms to wait; its error raised."""
        if isinstance(answer, redis.ResponseError):
            if "NOLIMIT" in str(answer):
                raise NoLimitError(
                    f"the rate limiter {self.name!r} has no limit yet: call limiter.configure(r, "
                    "limiter.published_limit()) first (starting a run does it).") from None
            raise answer
        return int(answer)

    def acquire(self, timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                asker: str = "", probe_for: float = PROBE_FOR, first: int | None = None) -> float:
        """Wait until the limiter says go; returns the seconds waited (0.0 when it said go at once).

        `first`: the answer of a check already sent (with other scripts, in one round trip), asked again
        only if it was a wait.

        Waits in this task rather than failing it: a slot is at most a few
        intervals away, and a re-queued task would only come back to ask again.
        Raises LimiterTimeout when the next slot is further than `timeout` seconds.
        """
        started, waited_once = time.monotonic(), False
        while True:
            wait_ms = self.check(asker, probe_for) if first is None else first
            first = None
            if wait_ms == 0:
                return time.monotonic() - started if waited_once else 0.0
            waited = time.monotonic() - started
            if waited + wait_ms / 1000 > timeout:
                raise LimiterTimeout(f"no slot from the rate limiter {self.name!r} within {timeout:g} s "
                                     f"(waited {waited:.1f} s, next slot in {wait_ms / 1000:.1f} s)")
            sleep(wait_ms / 1000)
            waited_once = True
