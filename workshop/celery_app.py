"""The Celery app every chapter starts from: Redis as broker and result backend.

The broker URL is read lazily, when the app first needs its configuration, so a
module may define `app = make_app(...)` at import time and a test or notebook
can still decide which Redis to use before the first task is sent.
"""
from __future__ import annotations

import os

from celery import Celery

from . import settings as settings_mod
from .redis_provider import NoRedisError


def _redis_url() -> str:
    url = settings_mod.load().redis_url
    if not url:
        raise NoRedisError(
            "The Celery app has no broker: set REDIS_URL, or call workshop.redis_provider.shared_redis() "
            "and workshop.celery_app.use_redis(url) before sending a task."
        )
    return url


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
