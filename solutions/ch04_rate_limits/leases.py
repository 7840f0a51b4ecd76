"""Leases: a station in flight has a deadline; a reaper brings back the ones whose worker vanished.

    pending (set) --lease--> in flight (sorted set, scored by deadline) --settle--> fetched
                                  |
                                  +-- deadline passed (the worker died) --reap--> pending

`acks_late` and `task_reject_on_worker_lost` make the broker deliver a task again
when its pool process dies, but not every crash is that polite: a whole worker
killed (or a host gone) leaves its message unacknowledged until the broker's
visibility timeout, an hour by default. The lease makes the stations themselves
come back, in seconds. Whoever finishes a station, the first holder or the next,
writes the same readings and moves the same id: an idempotent write, so a station
fetched twice is still done once in effect.

Every deadline is on Redis's clock (TIME in the scripts), like the rate limiter's.
"""
from __future__ import annotations

import redis

from .keys import Keys

# KEYS[1] pending, KEYS[2] in flight; ARGV[1] how many, ARGV[2] lease in ms.
# The smallest ids first, so batches are the same from run to run (and so are the API's seeded faults).
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ids = redis.call('SORT', KEYS[1], 'ALPHA', 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
  redis.call('SREM', KEYS[1], id)
end
return ids
"""

# KEYS[1] in flight; ARGV[1] lease in ms, ARGV[2..] stations. Only stations still in flight.
_EXTEND = """
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
end
return n
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def lease(r: redis.Redis, k: Keys, count: int, seconds: float) -> list[str]:
    """Take up to `count` stations from pending and hold them in flight for `seconds`."""
    return r.register_script(_LEASE)(keys=[k.pending, k.in_flight], args=[count, _ms(seconds)])


def extend(r: redis.Redis, k: Keys, stations: list[str], seconds: float) -> int:
    """Move the deadline of those `stations` still in flight to `seconds` from now; how many were."""
    if not stations:
        return 0
    return int(r.register_script(_EXTEND)(keys=[k.in_flight], args=[_ms(seconds), *stations]))


def reaper_script() -> str:
    """Lua: move every station whose lease deadline has passed from in flight back to pending."""
    # >>> exercise 4.3: return the Lua: now (ms) from TIME; ids = ZRANGEBYSCORE KEYS[1] -inf now LIMIT 0 ARGV[1]; per id ZREM it from KEYS[1] and SADD it to KEYS[2]; return ids
    return """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('SADD', KEYS[2], id)
end
return expired
"""
    # <<<


def reap(r: redis.Redis, k: Keys, limit: int = 1000) -> list[str]:
    """Return expired leases to pending (at most `limit` at a time); the stations brought back.

    One script, so a station is never in both places nor in neither, and two
    reapers running at once cannot bring the same station back twice.
    """
    return r.register_script(reaper_script())(keys=[k.in_flight, k.pending], args=[limit])


def in_flight(r: redis.Redis, k: Keys) -> dict[str, float]:
    """station -> seconds until its lease expires (negative: expired, waiting for the reaper)."""
    seconds, micros = r.time()
    now = seconds * 1000 + micros / 1000
    return {station: (deadline - now) / 1000 for station, deadline in r.zrange(k.in_flight, 0, -1, withscores=True)}
