"""A 429 pauses the whole loop, every worker, for at least Retry-After.

One worker gets the 429; all of them must stop, or the others keep spending
requests the API will refuse (and some APIs lengthen the penalty for each). The
pause is one key in Redis: "paused until" (ms on Redis's clock). The limiter's
script reads it before anything else, so every worker that asks for a slot waits
the pause out: no worker needs to be told.

Pausing is a script too, so that two workers hit by a 429 at once cannot undo
each other: a pause is extended, never shortened. It also empties the limiter:
the API's bucket is empty after a 429, so ours restarts empty when the pause
ends (one request, then one per interval), instead of sending a burst into it.
"""
from __future__ import annotations

import json
import time

import redis

from workshop.lua import Script, push_once

from .keys import API, ApiKeys

KEEP = 200   # pause records kept, for the notebook and the tests

# KEYS[1] pause, KEYS[2] limiter state (TAT), KEYS[3] limit; ARGV[1] the pause in ms.
# Returns the ms the loop is now paused for (this pause or a longer one already set).
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000      -- ms, on Redis's clock, as the limiter's
local asked = tonumber(ARGV[1])
"""


def pause_core() -> str:
    """The pause, in Lua: with `now` and `asked` (ms) known, pause everyone and answer the ms paused for."""
    # >>> exercise 4.2: return the Lua: every worker waits at least `asked` ms from now: KEYS[1] holds "paused until" (ms, Redis's clock), only ever moved later and gone when it passed; when the limit (KEYS[3]: rate, burst) is set, the limiter's TAT (KEYS[2]) lets exactly one request go when the pause ends (never moved earlier); return the ms the loop is now paused for
    return """
local until_ms = now + asked
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], string.format('%.3f', until_ms), 'PX', math.ceil(until_ms - now))
else
  until_ms = current                                              -- a longer pause stands
end
local limit = redis.call('HMGET', KEYS[3], 'rate', 'burst')
if limit[1] and limit[2] then
  -- The TAT that lets exactly one request go at until_ms: the bucket restarts empty.
  local empty = until_ms + (1000 / tonumber(limit[1])) * (tonumber(limit[2]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if empty > tat then
    redis.call('SET', KEYS[2], string.format('%.3f', empty), 'PX', math.ceil(empty - now) + 1000)
  end
end
return math.ceil(until_ms - now)
"""
    # <<<


def pause_script() -> str:
    return _PROLOGUE + pause_core()


_PAUSE = Script(pause_script)   # made at its first call: pause_core is exercise 4.2


def pause(r: redis.Redis, seconds: float, why: str = "", name: str = API) -> float:
    """Pause every worker for at least `seconds`; returns the seconds the loop is now paused for."""
    k = ApiKeys(name)
    ms = max(1, int(seconds * 1000 + 0.999))   # round up: at least what was asked
    paused_ms = int(_PAUSE(r, keys=[k.pause, k.state, k.limit], args=[ms]))
    record = {"at": time.time(), "asked": seconds, "paused_for": paused_ms / 1000, "why": why}
    push_once(r, k.pauses, [json.dumps(record)], KEEP)   # one record per pause, even if sent twice
    return paused_ms / 1000


def paused_for(r: redis.Redis, name: str = API) -> float:
    """Seconds the loop is still paused for (0.0 when it is not paused), on Redis's clock."""
    until_ms = r.get(ApiKeys(name).pause)
    if until_ms is None:
        return 0.0
    seconds, micros = r.time()
    return max(0.0, (float(until_ms) - (seconds * 1000 + micros / 1000)) / 1000)


def history(r: redis.Redis, name: str = API) -> list[dict]:
    """Every recorded pause, oldest first: {at, asked, paused_for, why}."""
    return [json.loads(raw) for raw in r.lrange(ApiKeys(name).pauses, 0, -1)]
