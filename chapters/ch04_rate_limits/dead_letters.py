# Exercise copy of solutions/ch04_rate_limits/dead_letters.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The dead-letter hash: stations we gave up on, each with the reason, never lost silently.

A dead letter is not deleted work: it waits for a person, who reads the reason
(5xx after 3 attempts, a malformed body, a poison reading the transform cannot
take, ...) and, once the cause is fixed, `replay`s it. Giving up is one script:
the station leaves `in flight` (or the segment's stage, for poison) and enters the
hash together, so it is in exactly one place; and only a lease its holder still
holds is given up: a stale message buries nothing.
"""
from __future__ import annotations

import json
import time
from typing import Mapping

import redis

from workshop.lua import Script, call_mark, once

from ch02_segmented import stages

from .keys import Keys
from .retries import Failure


# KEYS[1] in flight, KEYS[2] pending, KEYS[3] dead letters, KEYS[4] holders, KEYS[5] causes, KEYS[6] attempts;
# ARGV[1] the holder's token ("" = whoever holds it), then station, record per station.
# Only a station its holder still holds is buried: one whose lease expired and that another
# holder has since leased, settled (fetched) or that the reaper put back (pending) is left alone.
_BURY = """
local buried = {}
for i = 2, #ARGV, 2 do
  local holder = redis.call('HGET', KEYS[4], ARGV[i])
  if holder and (ARGV[1] == '' or holder == ARGV[1]) and redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[4], ARGV[i])
    redis.call('HDEL', KEYS[5], ARGV[i])
    redis.call('HDEL', KEYS[6], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    buried[#buried + 1] = ARGV[i]
  end
end
return buried
"""

# KEYS[1] the segment's stage, KEYS[2] dead letters; ARGV[1] station, ARGV[2] record.
_SET_ASIDE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


# Sent twice, each answers what it did the first time (workshop.lua.once; its last key is the call's own).
_BURY_SCRIPT, _SET_ASIDE_SCRIPT = Script(once(_BURY)), Script(once(_SET_ASIDE))


def _record(failure: Failure, attempts: int) -> str:
    return json.dumps({"reason": failure.reason, "detail": failure.detail, "attempts": attempts, "at": time.time()})


def bury(r: redis.Redis, k: Keys, batch: list[str], failure: Failure,
         attempts: int | Mapping[str, int], holder: str | None) -> list[str]:
    """Give up on those stations of `batch` that `holder` still holds (None: whoever holds them): one
    dead letter each, with why and after how many attempts (one number for all, or station -> attempts);
    returns the stations buried."""
    if not batch:
        return []
    args: list = [holder or ""]
    for station in batch:
        args += [station, _record(failure, attempts if isinstance(attempts, int) else attempts.get(station, 0))]
    return _BURY_SCRIPT(r, keys=[k.in_flight, k.pending, k.dead_letters, k.holders, k.causes, k.attempts,
                                 call_mark(k.dead_letters)],
                                    args=args)


def set_aside(r: redis.Redis, k: Keys, source: str, station: str, failure: Failure, failures: int) -> bool:
    """Dead-letter a poison station straight from the stage its segment takes batches from; False if it
    was not there any more."""
    return _SET_ASIDE_SCRIPT(r, keys=[source, k.dead_letters, call_mark(k.dead_letters)],
                             args=[station, _record(failure, failures)]) == 1


def dead_letters(r: redis.Redis, k: Keys) -> dict[str, dict]:
    """station -> {reason, detail, attempts, at}."""
    return {station: json.loads(raw) for station, raw in r.hgetall(k.dead_letters).items()}


def replay(r: redis.Redis, k: Keys, stations: list[str] | None = None) -> list[str]:
    """Give dead letters (all, or `stations`) another chance, once their cause is fixed: back to pending
    (the whole way again, from fetch), attempts and causes forgotten. Kick the loop afterwards
    (`pipeline.replay` does both)."""
    stations = sorted(set(r.hkeys(k.dead_letters)) if stations is None else
                      set(stations) & set(r.hkeys(k.dead_letters)))
    if stations:
        with r.pipeline() as p:
            p.hdel(k.dead_letters, *stations)
            p.hdel(k.attempts, *stations)
            p.hdel(k.causes, *stations)
            stages.add(p, k.pending, stations)
            p.execute()
    return stations
