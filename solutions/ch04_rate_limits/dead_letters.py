"""The dead-letter hash: stations we gave up on, each with the reason, never lost silently.

A dead letter is not deleted work: it waits for a person, who reads the reason
(5xx after 3 attempts, a malformed body, ...) and, once the cause is fixed,
`requeue`s it. Giving up is one transaction: the station leaves `in flight` and
`pending` and enters the hash together, so it is in exactly one place.
"""
from __future__ import annotations

import json
import time

import redis

from .keys import Keys
from .retries import Failure


def bury(r: redis.Redis, k: Keys, batch: list[str], failure: Failure, attempts: int) -> None:
    """Give up on `batch`: one dead letter per station, with why and after how many attempts."""
    record = json.dumps({"reason": failure.reason, "detail": failure.detail, "attempts": attempts,
                         "at": time.time()})
    with r.pipeline() as p:   # MULTI: out of flight and into the dead letters together
        p.hset(k.dead_letters, mapping={station: record for station in batch})
        p.zrem(k.in_flight, *batch)
        p.srem(k.pending, *batch)
        p.execute()


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
