"""The dead-letter hash: stations we gave up on, each with the reason, never lost silently.

A dead letter is not deleted work: it waits for a person, who reads the reason
(5xx after 3 attempts, a malformed body, ...) and, once the cause is fixed,
`requeue`s it. Giving up is one script: the station leaves `in flight` and
enters the hash together, so it is in exactly one place.
"""
from __future__ import annotations

import json
import time
from typing import Mapping

import redis

from .keys import Keys
from .retries import Failure


# KEYS[1] in flight, KEYS[2] pending, KEYS[3] dead letters; ARGV: station, record per station.
# Only a station still in flight is buried: one whose lease expired and that another
# holder has since settled (fetched) or that the reaper put back (pending) is left alone.
_BURY = """
local buried = {}
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('SREM', KEYS[2], ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    buried[#buried + 1] = ARGV[i]
  end
end
return buried
"""


def bury(r: redis.Redis, k: Keys, batch: list[str], failure: Failure,
         attempts: int | Mapping[str, int]) -> list[str]:
    """Give up on those stations of `batch` still in flight: one dead letter each, with why and after how
    many attempts (one number for all, or station -> attempts); returns the stations buried.

    The lease has no holder's name, so "still in flight" stands for "still ours": a
    station that went back to pending or on to fetched since is not buried. One that
    another holder has leased again meanwhile is buried, and that holder's settle,
    if it succeeds, takes it out of the dead letters again (one place either way).
    """
    now = time.time()
    args: list = []
    for station in batch:
        n = attempts if isinstance(attempts, int) else attempts.get(station, 0)
        args += [station, json.dumps({"reason": failure.reason, "detail": failure.detail, "attempts": n,
                                      "at": now})]
    if not args:
        return []
    return r.register_script(_BURY)(keys=[k.in_flight, k.pending, k.dead_letters], args=args)


def dead_letters(r: redis.Redis, k: Keys) -> dict[str, dict]:
    """station -> {reason, detail, attempts, at}."""
    return {station: json.loads(raw) for station, raw in r.hgetall(k.dead_letters).items()}


def requeue(r: redis.Redis, k: Keys, stations: list[str] | None = None) -> list[str]:
    """Give dead letters (all, or `stations`) another chance: back to pending, attempts forgotten."""
    stations = sorted(stations if stations is not None else r.hkeys(k.dead_letters))
    if stations:
        with r.pipeline() as p:
            p.hdel(k.dead_letters, *stations)
            p.hdel(k.attempts, *stations)
            p.sadd(k.pending, *stations)
            p.execute()
    return stations
