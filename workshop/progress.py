"""Live progress of a pipeline, read from counters in Redis.

A pipeline keeps a Redis hash with the fields `total`, `done` and `failed`
(`start` and `advance` write it); `follow` draws a progress bar from it, in a
notebook or a terminal, until every station is accounted for or time runs out.
The bar only reads Redis, so it follows work done by any worker, anywhere.
"""
from __future__ import annotations

import time
from typing import Callable

import redis
from tqdm.auto import tqdm

from .lua import ANSWER_TTL, Script, call_mark

FIELDS = ("total", "done", "failed")


def start(r: redis.Redis, key: str, total: int) -> None:
    """Begin counting a run of `total` items (forgets an earlier run under the same key)."""
    with r.pipeline() as p:
        p.delete(key)
        p.hset(key, mapping={"total": total, "done": 0, "failed": 0})
        p.execute()


# KEYS[1] the counters, KEYS[2] this call's mark; ARGV done, failed. The mark makes a call sent twice count once.
_ADVANCE = Script(f"""
if not redis.call('SET', KEYS[2], 1, 'NX', 'EX', {ANSWER_TTL}) then return 1 end   -- counted already
if ARGV[1] ~= '0' then redis.call('HINCRBY', KEYS[1], 'done', ARGV[1]) end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'failed', ARGV[2]) end
return 1
""")


def advance(r: redis.Redis, key: str, done: int = 0, failed: int = 0) -> None:
    """Count `done` and `failed` items more, once: redis-py may send the command twice (a lost reply)."""
    if done or failed:
        _ADVANCE(r, keys=[key, call_mark(key)], args=[done, failed])


def counters(r: redis.Redis, key: str) -> dict[str, int]:
    values = r.hmget(key, FIELDS)
    return {name: int(value or 0) for name, value in zip(FIELDS, values)}


def follow(r: redis.Redis, key: str, *, desc: str = "stations", timeout: float = 300.0,
           poll: float = 0.2, until: Callable[[], bool] | None = None) -> dict[str, int]:
    """Show a bar for the counters at `key` until done + failed reaches total (or `until()` is true).

    Returns the last counters read. Does not raise on timeout: the caller compares
    the counters with what it expected and says what is missing.
    """
    now = counters(r, key)
    deadline = time.monotonic() + timeout
    with tqdm(total=now["total"], desc=desc, unit="st") as bar:
        while True:
            # `until` first: counters read after it are final when it says stop.
            stop = (until is not None and until()) or time.monotonic() > deadline
            now = counters(r, key)
            bar.total = now["total"]
            bar.n = now["done"] + now["failed"]
            bar.set_postfix(failed=now["failed"], refresh=False)
            bar.refresh()
            if stop or (now["total"] > 0 and bar.n >= now["total"]):
                return now
            time.sleep(poll)
