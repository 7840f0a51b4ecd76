"""The Celery app every chapter starts from: Redis as broker and result backend.

The broker URL is read lazily, when the app first needs its configuration, so a
module may define `app = make_app(...)` at import time and a test or notebook
can still decide which Redis to use before the first task is sent.
"""
from __future__ import annotations

import functools
import os
import threading

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import redis_faults, settings as settings_mod
from .redis_provider import NoRedisError


def _redis_url() -> str:
    # REDIS_URL alone, not every setting: the tasks ask for their client several times a turn.
    return _checked_url(os.environ.get("REDIS_URL"))


def _state_url() -> str:
    """Where the pipeline's state lives: STATE_REDIS_URL when set (a Redis, or a Redis Cluster), else REDIS_URL."""
    raw = os.environ.get("STATE_REDIS_URL")
    return _checked_state_url(raw) or _redis_url()


@functools.lru_cache(maxsize=8)
def _checked_state_url(raw: str | None) -> str | None:
    return settings_mod.parse_value("state_redis_url", raw) if raw is not None else None


@functools.lru_cache(maxsize=8)
def _checked_url(raw: str | None) -> str:
    url = settings_mod.parse_value("redis_url", raw) if raw is not None else None
    if not url:
        raise NoRedisError(
            "No Redis for the pipeline: set REDIS_URL, or start from lab.setup() (notebooks) or the test "
            "fixtures, which set it (elsewhere: workshop.celery_app.use_redis(url))."
        )
    return url


SOCKET_TIMEOUT = 5.0          # s: a command (or a reply) that takes longer is a dead connection
CONNECT_TIMEOUT = 2.0         # s: Redis on the same network answers a connect in milliseconds
HEALTH_CHECK_INTERVAL = 10    # s: PING a connection idle this long before using it again
# redis-py sleeps min(cap, base * 2**n) after failure n = 1, 2, ... (redis/backoff.py):
# 0.1, 0.2, 0.4, 0.8, then 1 s. 8 retries sleep 5.5 s in all: a ~5 s Redis restart.
RETRIES = 8
# redis-py's own errors only. Its default list adds socket.timeout, which is what a raw
# connect that times out raises: the reconnect inside each command retry then retries too,
# RETRIES x RETRIES connects (about 3 minutes to a black-holed host instead of < 30 s).
RETRY_ON = (RedisConnectionError, RedisTimeoutError)


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES, supported_errors=RETRY_ON)


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    """The pipeline's client for `url`: explicit timeouts, and retries that ride out a Redis restart.

    Explicit because `Redis.from_url` builds its pool straight from the URL and these
    keywords: it gets none of `Redis()`'s retry defaults, so without `retry` a command
    fails on the first dropped connection. A command that fails on a connection error
    or a timeout is retried on a new connection, RETRIES times, sleeping 5.5 s in all.
    A Redis that stays away fails the command after that: a refused connect returns at
    once, so redis.ConnectionError comes after ~5.5 s; a host that does not answer at
    all costs CONNECT_TIMEOUT per attempt on top: redis.TimeoutError within 30 s.

    The trade-off: a failure after the command was sent but before its reply (the
    connection dropped, a read timed out) is ambiguous, and the retry may run the
    command a second time. So every write and script must be safe twice: a plain SET,
    SADD, SREM or ZADD done twice is harmless; a counted write or a script whose answer
    matters must carry an id it records (a receipt's id, a budget call's id, workshop.lua.once's key). REDIS_FAULTS (workshop/redis_faults.py)
    makes this client lose a seeded share of replies on purpose, so the second run
    really happens: `make test-faults` runs the chapters' tests under it.
    """
    if url.startswith(settings_mod.CLUSTER_SCHEME + "://"):
        return _cluster_client(url)
    return redis.Redis.from_url(
        url, decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True, health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=_retry(),
        # Redundant with the Retry's list, said for the reader; not retry_on_timeout, which
        # Redis() deprecates since redis-py 6.
        retry_on_error=list(RETRY_ON),
        **redis_faults.pool_options(url),
    )


class StateCluster(redis.RedisCluster):
    """redis.RedisCluster where `pipeline()` means what it means on redis.Redis: a MULTI/EXEC transaction.

    RedisCluster's own default is a plain pipeline: the lessons' transactions would quietly run as
    separate commands. As transactions they stay atomic, and one whose keys span two slots fails
    (CrossSlotTransactionError) instead of half-running. redis-py's own split of a multi-slot DEL or
    MGET by slot asks for `pipeline()` and means a plain one: it still gets one.
    """

    _splitting = threading.local()

    def pipeline(self, transaction=None, shard_hint=None):
        if transaction is None:
            transaction = not getattr(self._splitting, "on", False)
        pipe = super().pipeline(transaction, shard_hint)
        # ClusterPipeline's eval() takes no arguments (redis-py 8): queue EVAL as redis.Redis's pipeline does.
        pipe.eval = lambda script, numkeys, *keys_and_args: pipe.execute_command("EVAL", script, numkeys,
                                                                                 *keys_and_args)
        return pipe

    def _execute_pipeline_by_slot(self, *args, **kwargs):   # DEL, MGET, ... of keys in several slots
        self._splitting.on = True
        try:
            return super()._execute_pipeline_by_slot(*args, **kwargs)
        finally:
            self._splitting.on = False

    def _execute_multi_shard_command(self, *args, **kwargs):
        self._splitting.on = True
        try:
            return super()._execute_multi_shard_command(*args, **kwargs)
        finally:
            self._splitting.on = False


def _cluster_client(url: str) -> redis.RedisCluster:
    """The same client for a Redis Cluster (STATE_REDIS_URL=redis+cluster://host:port,...): same timeouts, and
    the same Retry, which RedisCluster runs itself (it refreshes its map of the slots between two tries).

    It sends each command to the node that holds its key's slot: a script or a MULTI whose keys are in
    two slots fails there (CROSSSLOT), which is why every key of a day carries the day as a hash tag.
    A DEL of keys in several slots is split by slot (redis-py: not atomic, one DEL per slot).
    """
    return StateCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings_mod.cluster_nodes(url)],
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT, socket_keepalive=True,
        # No health_check_interval: RedisCluster passes only some keywords on to its nodes' connections.
        retry=_retry(),
        **redis_faults.pool_options(url),
    )


def redis_client() -> redis.Redis:
    """The Redis a pipeline's tasks keep their state in, with str responses: the broker's (REDIS_URL), or
    STATE_REDIS_URL's when set, a Redis or a Redis Cluster (redis.RedisCluster: the lessons' code is the same).

    The URL is read at call time (a test or notebook may choose it late); one client,
    and so one connection pool, per URL per process.
    """
    return _client(_state_url())


def use_redis(url: str) -> None:
    """Make every app made here, and every worker process started from here, use this Redis."""
    os.environ["REDIS_URL"] = url


# kombu's Redis transport reads these (kombu/transport/redis.py, Channel.from_transport_options).
BROKER_TRANSPORT_OPTIONS = {
    # Redis re-delivers any unacked message older than this, countdowns included:
    # keep every countdown and ETA well below it.
    "visibility_timeout": 3600,
    # kombu's default is None, wait forever: a publish on a half-open connection would hang.
    "socket_timeout": SOCKET_TIMEOUT,
    "socket_connect_timeout": CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": HEALTH_CHECK_INTERVAL,
    # No retry_on_timeout: it turns off kombu's batched publishing (which must not replay
    # writes), and a publish is retried by Celery's task_publish_retry instead.
}


def make_app(name: str, **config) -> Celery:
    """A Celery app named `name` on the workshop's Redis; keyword arguments override settings."""
    app = Celery(name)

    def defaults() -> dict:
        url = _redis_url()
        # Key by key, so a chapter that sets its own visibility_timeout keeps the socket settings.
        transport = {**BROKER_TRANSPORT_OPTIONS, **(config.get("broker_transport_options") or {})}
        return {
            "broker_url": url,
            "result_backend": url,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_expires": 3600,
            "timezone": "UTC",
            "broker_connection_retry_on_startup": True,
            # Sending a task (the next batch, from a signal handler) retries through the same
            # restart: sleeps 0, 0.5, then 1 s, up to 30 retries (~28 s); Celery's own
            # default gives up after 3 (1.2 s).
            "task_publish_retry": True,
            "task_publish_retry_policy": {"max_retries": 30, "interval_start": 0,
                                          "interval_step": 0.5, "interval_max": 1},
            **config,
            "broker_transport_options": transport,
        }

    app.add_defaults(defaults)
    return app
