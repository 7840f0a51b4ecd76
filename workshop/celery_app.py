"""The Celery app every chapter starts from: Redis as broker and result backend.

The broker URL is read lazily, when the app first needs its configuration, so a
module may define `app = make_app(...)` at import time and a test or notebook
can still decide which Redis to use before the first task is sent.
"""
from __future__ import annotations

import functools
import os

import redis
from celery import Celery

from . import settings as settings_mod
from .redis_provider import NoRedisError


def _redis_url() -> str:
    url = settings_mod.load().redis_url
    if not url:
        raise NoRedisError(
            "No Redis for the pipeline: set REDIS_URL, or start from lab.setup() (notebooks) or the test "
            "fixtures, which set it (elsewhere: workshop.celery_app.use_redis(url))."
        )
    return url


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def redis_client() -> redis.Redis:
    """The Redis a pipeline's tasks keep their state in: the broker's, with str responses.

    The URL is read at call time (a test or notebook may choose it late); one client,
    and so one connection pool, per URL per process.
    """
    return _client(_redis_url())


def use_redis(url: str) -> None:
    """Make every app made here, and every worker process started from here, use this Redis."""
    os.environ["REDIS_URL"] = url


def make_app(name: str, **config) -> Celery:
    """A Celery app named `name` on the workshop's Redis; keyword arguments override settings."""
    app = Celery(name)

    def defaults() -> dict:
        url = _redis_url()
        return {
            "broker_url": url,
            "result_backend": url,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_expires": 3600,
            "timezone": "UTC",
            "broker_connection_retry_on_startup": True,
            # Redis re-delivers any unacked message older than this, countdowns included:
            # keep every countdown and ETA well below it.
            "broker_transport_options": {"visibility_timeout": 3600},
            **config,
        }

    app.add_defaults(defaults)
    return app
