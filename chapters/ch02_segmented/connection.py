# Exercise copy of solutions/ch02_segmented/connection.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The Redis connection tasks use: the workshop's Redis, with str responses."""
from __future__ import annotations

from functools import lru_cache

import redis

from workshop import settings as settings_mod
from workshop.redis_provider import NoRedisError


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def redis_client() -> redis.Redis:
    """One client (and connection pool) per Redis URL per process; the URL is read at call time."""
    url = settings_mod.load().redis_url
    if not url:
        raise NoRedisError("The segments have no Redis: set REDIS_URL, or start the notebook with "
                           "`lab.setup()`, which sets it.")
    return _client(url)
