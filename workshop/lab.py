"""One call at the top of a notebook: the tree under study, a Redis, and the fake API.

    from workshop import lab
    session = lab.setup(error_rate=0.1)      # any ApiConfig field sets the fault profile
    session.r, session.api.url, session.settings

Re-running the cell is safe: the API started by an earlier call is stopped first,
and the Redis (one per kernel) is kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import redis

from . import catch_up, settings as settings_mod, target
from .api import ApiConfig, ApiServer
from .celery_app import use_redis
from .redis_provider import shared_redis


@dataclass
class Lab:
    r: redis.Redis
    api: ApiServer
    settings: settings_mod.Settings
    redis_url: str


_current: Lab | None = None


def setup(target_tree: str | None = None, chapter: int | None = None, **api_profile) -> Lab:
    """Import chapters from WORKSHOP_TARGET (or `target_tree`), get a Redis, start the fake API.

    `chapter`: the notebook's chapter. On your exercises, an earlier chapter's exercise still a
    stub stops here, with one sentence naming it and the catch-up command."""
    global _current
    if _current is not None:
        _current.api.stop()
    tree = target.activate(target_tree)
    if chapter is not None and tree.name == "chapters":
        catch_up.require_earlier(chapter, tree.parent)
    provided = shared_redis()
    use_redis(provided.url)
    api = ApiServer(ApiConfig.from_settings(settings_mod.load()).changed(api_profile), port=0).start()
    # Workers started from this kernel, threads or processes, call this API.
    os.environ["API_URL"], os.environ["API_KEY"] = api.url, api.config.key
    _current = Lab(provided.client(), api, settings_mod.load(), provided.url)
    whose = "your exercises" if tree.name == "chapters" else "the reference; WORKSHOP_TARGET=chapters runs yours"
    print(f"code under study: {tree.name}/ ({whose})\nStations API: {api.url} ({api.config.rate:g} requests/s)")
    return _current
