# Exercise copy of solutions/ch02_segmented/stages.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""A stage of the pipeline (pending, fetched, ...) is a Redis sorted set whose every score is 0.

Why not a plain set? A set has SMOVE, but no order: taking "the next batch"
means reading the whole set (SMEMBERS) and sorting it, so the cost of a batch
grows with the day (chapter 3's loop takes a batch on every turn). With equal
scores, a sorted set keeps its members in id order, so the first ids are one
`ZRANGE … BYLEX LIMIT` away, O(log N + batch), and always the same ones from run
to run: reproducible batches, and so reproducible API faults. Counts are ZCARD.

Redis has no ZMOVE, so `move` is one: a few lines of Lua that Redis runs as a
single command. Like SMOVE it is atomic and idempotent: it moves only ids that
are in the source, so a batch run twice moves nothing twice, and a duplicate
cannot bring back a station that went further.
"""
from __future__ import annotations

from typing import Iterable

import redis

from workshop.lua import Script

SCORE = 0   # every member's: the order is the ids' own (byte order, as sorted() orders ASCII ids)

# KEYS[1] source, KEYS[2] destination; ARGV ids. Returns how many moved.
_MOVE = """
local moved = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
    moved = moved + 1
  end
end
return moved
"""


def add(client, key: str, ids: Iterable[str]) -> None:
    """Put `ids` in the stage `key` (a client or a pipeline); adding one twice is harmless."""
    members = dict.fromkeys(ids, SCORE)
    if members:
        client.zadd(key, members)


def move(client, source: str, destination: str, ids: Iterable[str]):
    """Move those `ids` that are in `source` to `destination`, atomically (a client or a pipeline:
    inside MULTI it runs at EXEC with the rest). The number moved (a pipeline: at execute)."""
    ids = list(ids)
    if not ids:
        return 0
    # EVAL, not a registered script: in a pipeline, redis-py checks a registered one exists first (SCRIPT
    # EXISTS, a round trip of its own); Redis caches an EVAL's script, only its short text travels.
    return client.eval(_MOVE, 2, source, destination, *ids)


# KEYS[1] every station found, KEYS[2] the stage new ones start in; ARGV ids. Returns how many were new.
_ADD_NEW = """
local new = 0
for i = 1, #ARGV do
  if redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
    new = new + 1
  end
end
return new
"""


_ADD_NEW_SCRIPT = Script(_ADD_NEW)


def add_new(client, found: str, start: str, ids: Iterable[str], chunk: int = 10_000) -> int:
    """Add `ids` to `found`, and those of them not there yet to the stage `start` too: one script per chunk,
    so a station already known (waiting, in flight, done or given up on, wherever that is) is left alone,
    and running it again adds nothing. How many were new."""
    ids, new = list(ids), 0
    for at in range(0, len(ids), chunk):
        new += _ADD_NEW_SCRIPT(client, keys=[found, start], args=ids[at:at + chunk])
    return new


def first(r: redis.Redis, key: str, size: int) -> list[str]:
    """The first `size` ids of the stage, in order, left where they are."""
    return r.zrange(key, "-", "+", bylex=True, offset=0, num=size) if size > 0 else []


def members(r: redis.Redis, key: str) -> list[str]:
    """Every id of the stage, in order (a whole segment run in chapter 2 reads them all once)."""
    return r.zrange(key, 0, -1)


def count(r, key: str):
    """How many ids the stage holds (ZCARD: Redis keeps the count, nothing is read)."""
    return r.zcard(key)


def holding(r: redis.Redis, key: str, ids: list[str]) -> list[str]:
    """Those `ids` that are in the stage, in the order given (one ZMSCORE)."""
    if not ids:
        return []
    return [station for station, score in zip(ids, r.zmscore(key, ids)) if score is not None]
