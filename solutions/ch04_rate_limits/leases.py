"""Leases: a station in flight has a deadline; a reaper brings back the ones whose worker vanished.

    pending (stage) --lease--> in flight (sorted set, scored by deadline; holders: station -> token) --settle--> fetched
                                  |
                                  +-- deadline passed (the worker died) --reap--> pending

`acks_late` and `task_reject_on_worker_lost` make the broker deliver a task again
when its pool process dies, but not every crash is that polite: a whole worker
killed (or a host gone) leaves its message unacknowledged until the broker's
visibility timeout, an hour by default. The lease makes the stations themselves
come back, in seconds. Whoever finishes a station, the first holder or the next,
writes the same readings and moves the same id: an idempotent write, so a station
fetched twice is still done once in effect.

Each lease has an owner: the token of the message that holds it (`token`: its
task id, which the loop picks when it leases, and its retry number). Every
script that touches a leased station (extend, settle, bury, hand over, release)
first checks that its holder is the given token. A stale message (a retry's
original run again, a redelivery after the reaper leased its stations to
another batch) holds nothing: it calls no API and ends.

Every deadline is on Redis's clock (TIME in the scripts), like the rate limiter's.
"""
from __future__ import annotations

import redis

from workshop.lua import Script, call_mark, once

from .keys import Keys

# KEYS[1] pending, KEYS[2] in flight, KEYS[3] holders, KEYS[4] attempts; ARGV[1] how many, ARGV[2] lease in ms,
# ARGV[3] token, ARGV[4] "reaped" when the caller just ran the reaper; KEYS[5] the call's answer (workshop.lua.once:
# the same lease sent twice returns the stations it leased the first time, and leases no more). The smallest ids first (pending is a stage:
# a sorted set, all scores 0, so BYLEX takes them in O(log N + count)), so batches are the same from run to run
# (and so are the API's seeded faults); halved for each unsettled attempt of the first, so a batch that never
# settles is split until the station at fault is alone. An expired lease in flight, and no reaper run yet:
# nothing leased, false; the caller reaps and asks again, so what came back goes first.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)   -- whole ms: see _deadline
if ARGV[4] ~= 'reaped' and redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, 1)[1] then
  return false
end
local ids = redis.call('ZRANGE', KEYS[1], '-', '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[1]))
if ids[1] then   -- the smallest ids of a smaller count are the first of these: trim, no second read
  local count = math.max(1, math.floor(tonumber(ARGV[1]) / 2 ^ tonumber(redis.call('HGET', KEYS[4], ids[1]) or '0')))
  for i = #ids, count + 1, -1 do ids[i] = nil end
end
if not ids[1] then return ids end
local deadlines, holders = {}, {}   -- one ZADD, one HSET, one ZREM for the whole batch
for _, id in ipairs(ids) do
  deadlines[#deadlines + 1] = now + tonumber(ARGV[2])
  deadlines[#deadlines + 1] = id
  holders[#holders + 1] = id
  holders[#holders + 1] = ARGV[3]
end
redis.call('ZADD', KEYS[2], unpack(deadlines))
redis.call('HSET', KEYS[3], unpack(holders))
redis.call('ZREM', KEYS[1], unpack(ids))
return ids
"""

# The lease's new deadline: now on Redis's clock, plus ARGV[<index>] ms. In whole ms: a Lua number handed to
# redis.call is turned into text and the score parsed back, and a fraction costs far more than a whole number
# (a ZADD of 50 deadlines, measured in Redis 7.0: about 40 µs whole, 350 µs with fractions of a ms).
def _deadline(index: int) -> str:
    return f"""
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[{index}])"""


# KEYS[1] in flight, KEYS[2] holders; ARGV[1] lease in ms, ARGV[2] token, ARGV[3..] stations.
_EXTEND = _deadline(1) + """
local n = 0
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[2] then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS[1] in flight, KEYS[2] holders, KEYS[3] attempts; ARGV[1] token, ARGV[2] new token, ARGV[3] lease in ms,
# ARGV[4] "1": the attempt does not count, ARGV[5..] stations.
# Idempotent: once handed over, the old token holds nothing.
_HAND_OVER = _deadline(3) + """
local n = 0
for i = 5, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[2])
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
    if ARGV[4] == '1' and redis.call('HINCRBY', KEYS[3], ARGV[i], -1) <= 0 then
      redis.call('HDEL', KEYS[3], ARGV[i])
    end
    n = n + 1
  end
end
return n
"""

# KEYS: in flight, holders, pending, attempts, causes; ARGV[1] token (or a task id's prefix "<id>:"),
# ARGV[2] "prefix" or "exact", ARGV[3] "1": the attempt does not count, ARGV[4] cause JSON or "",
# ARGV[5..] stations. Idempotent: a station released is held by no one.
_RELEASE = """
local released = {}
for i = 5, #ARGV do
  local holder = redis.call('HGET', KEYS[2], ARGV[i])
  if holder and (holder == ARGV[1] or (ARGV[2] == 'prefix' and string.sub(holder, 1, #ARGV[1]) == ARGV[1])) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZADD', KEYS[3], 0, ARGV[i])
    if ARGV[3] == '1' and redis.call('HINCRBY', KEYS[4], ARGV[i], -1) <= 0 then
      redis.call('HDEL', KEYS[4], ARGV[i])
      redis.call('HDEL', KEYS[5], ARGV[i])
    end
    if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[i], ARGV[4]) end
    released[#released + 1] = ARGV[i]
  end
end
return released
"""


def lease_script() -> str:
    """The lease's Lua (KEYS 1-4 and ARGV as above), without `once`: for a script that leases among other
    steps (turn.py), which keeps its own answer."""
    return _LEASE


# Each sent twice (redis-py, after a lost reply) answers what it did the first time (workshop.lua.once: its
# last key is the call's own): a repeat would otherwise find the work done and answer 0, or nothing.
_LEASE_ONCE, _EXTEND_SCRIPT = Script(once(_LEASE)), Script(once(_EXTEND))
_HAND_OVER_SCRIPT, _RELEASE_SCRIPT = Script(once(_HAND_OVER)), Script(once(_RELEASE))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def token(task_id: str, retries: int = 0) -> str:
    """The lease token of a message: its task id and retry number (a retry is a new message, same id)."""
    return f"{task_id}:{retries or 0}"


def token_of(request) -> str:
    """The lease token of the message a task is running (task.request)."""
    return token(request.id, request.retries)


def lease(r: redis.Redis, k: Keys, count: int, seconds: float, holder: str) -> list[str]:
    """Take up to `count` stations from pending and hold them in flight for `seconds`, for the token `holder`.

    Fewer when the first of them came back unsettled: `count` halved for each of its attempts.
    Expired leases are brought back first (`reap`), only when there are some: one round trip a turn, not two.
    A token leases once (each message has its own): the same lease sent again (a lost reply) returns the
    stations it took the first time and takes no more.
    """
    keys = [k.pending, k.in_flight, k.holders, k.attempts]
    taken = _LEASE_ONCE(r, keys=[*keys, f"{k.base}:leased:{holder}"], args=[count, _ms(seconds), holder, ""])
    if taken is None:
        reap(r, k)
        taken = _LEASE_ONCE(r, keys=[*keys, f"{k.base}:leased:{holder}:reaped"],
                            args=[count, _ms(seconds), holder, "reaped"])
    return taken


def held(r: redis.Redis, k: Keys, stations: list[str], holder: str) -> list[str]:
    """Those `stations` that `holder` holds, in order."""
    if not stations:
        return []
    return [station for station, h in zip(stations, r.hmget(k.holders, stations)) if h == holder]


def extend(r: redis.Redis, k: Keys, stations: list[str], seconds: float, holder: str) -> int:
    """Move the deadline of those `stations` `holder` holds to `seconds` from now; how many it holds."""
    if not stations:
        return 0
    return int(_EXTEND_SCRIPT(r, keys=[k.in_flight, k.holders, call_mark(k.in_flight)],
                              args=[_ms(seconds), holder, *stations]))


def hand_over(r: redis.Redis, k: Keys, stations: list[str], holder: str, successor: str, seconds: float,
              uncount: bool = False) -> int:
    """Pass `holder`'s lease on `stations` to `successor` (its retry), for `seconds`; uncount: the attempt
    was not the batch's fault (a 429). How many were handed over."""
    if not stations:
        return 0
    return int(_HAND_OVER_SCRIPT(r, keys=[k.in_flight, k.holders, k.attempts, call_mark(k.in_flight)],
                                             args=[holder, successor, _ms(seconds), int(uncount), *stations]))


def release(r: redis.Redis, k: Keys, stations: list[str], holder: str, *, prefix: bool = False,
            uncount: bool = False, cause: str = "") -> list[str]:
    """Put `holder`'s stations back in pending now (not at the deadline); the stations released.

    prefix: `holder` is "<task id>:", any retry of that task (a worker's main process knows
    the id of a task it killed, not its retry number). uncount: the attempt did not count.
    cause: the JSON cause to record for the attempt (see retries.py).
    """
    if not stations:
        return []
    return _RELEASE_SCRIPT(
        r, keys=[k.in_flight, k.holders, k.pending, k.attempts, k.causes, call_mark(k.in_flight)],
        args=[holder, "prefix" if prefix else "exact", int(uncount), cause, *stations])


def reaper_script() -> str:
    """Lua: move every station whose lease deadline has passed from in flight (KEYS[1]) back to pending
    (KEYS[2]), and forget its holder (KEYS[3]): a message of the old holder is stale from then on."""
    # >>> exercise 4.4: return the Lua: at most ARGV[1] stations whose deadline (score in KEYS[1], ms on Redis's clock) has passed leave in flight, lose their holder (KEYS[3]) and are back in pending (KEYS[2], a stage: score 0), all in one step; return their ids
    return """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local expired = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZADD', KEYS[2], 0, id)
end
return expired
"""
    # <<<


def reap(r: redis.Redis, k: Keys, limit: int = 1000) -> list[str]:
    """Return expired leases to pending (at most `limit` at a time); the stations brought back.

    One script, so a station is never in both places nor in neither, and two
    reapers running at once cannot bring the same station back twice.
    """
    return _REAPER(r, keys=[k.in_flight, k.pending, k.holders, call_mark(k.in_flight)], args=[limit])


def in_flight(r: redis.Redis, k: Keys) -> dict[str, float]:
    """station -> seconds until its lease expires (negative: expired, waiting for the reaper)."""
    seconds, micros = r.time()
    now = seconds * 1000 + micros / 1000
    return {station: (deadline - now) / 1000 for station, deadline in r.zrange(k.in_flight, 0, -1, withscores=True)}


_REAPER = Script(lambda: once(reaper_script()))   # made at its first call: reaper_script is exercise 4.4
