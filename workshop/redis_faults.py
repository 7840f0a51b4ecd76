"""Lost replies on purpose: proof that every Redis write and script is safe when sent twice.

redis-py re-sends a command when its connection fails between the command and its
reply (the Retry in workshop.celery_app._client). Redis has then run the command
already: an INCR counts twice, a script runs twice. With REDIS_FAULTS set (e.g.
`lost-reply:0.05,seed:7`), the pipeline's client does exactly that for a seeded share
of its commands: it sends the command, lets Redis run it, reads the real reply, then
drops the connection and raises redis.ConnectionError, the error the Retry retries on.

- Single commands, scripts (EVALSHA, EVAL, SCRIPT LOAD) and whole pipelines and
  transactions (one request, so one fault runs all of it twice) are all covered.
- The re-send of a lost reply is never lost itself: a command runs at most twice.
- The draws come from a Random seeded with the seed and the process id: each
  prefork pool process loses different replies, the same ones on every run of it.
- Only the pipeline's client: Celery's broker and backend, and test fixtures' clients,
  use their own connections.
- Each fault is logged once at WARNING, counted in this process (`stats()`) and in
  Redis itself, through a clean connection: HINCRBY redis-faults:injected COMMAND 1
  (`injected(client)` reads it), so a test sees the faults of every worker process.
"""
from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import random

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.connection import Connection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from . import settings as settings_mod

INJECTED = "redis-faults:injected"   # hash: command -> faults injected, over all processes
log = logging.getLogger(__name__)


def from_environment() -> settings_mod.RedisFaults | None:
    """REDIS_FAULTS parsed (None when unset); a bad value raises SettingsError naming it."""
    return _parsed(os.environ.get("REDIS_FAULTS"))


@functools.lru_cache(maxsize=8)
def _parsed(raw: str | None) -> settings_mod.RedisFaults | None:
    return settings_mod.parse_value("redis_faults", raw) if raw is not None else None


def pool_options(url: str) -> dict:
    """Keywords for `Redis.from_url(url, ...)`: the faulty connection class when REDIS_FAULTS is set, else none."""
    faults = from_environment()
    if faults is None:
        return {}
    # The class the URL itself would choose (TCP, TLS or a Unix socket), losing replies; a cluster's nodes: TCP.
    base = Connection if url.startswith(settings_mod.CLUSTER_SCHEME + "://") else \
        parse_url(url).get("connection_class", Connection)
    return {"connection_class": _faulty(base, faults, url)}


@functools.lru_cache(maxsize=8)
def _faulty(base: type, faults: settings_mod.RedisFaults, url: str) -> type:
    return type(f"LostReply{base.__name__}", (LostReplyMixin, base), {"faults": faults, "counter_url": url})


TOPOLOGY = ("CLUSTER", "COMMAND", "READONLY", "READWRITE")   # commands a cluster client sends to find its nodes


class LostReplyMixin:
    """A redis-py connection that loses the reply of a seeded share of its requests.

    A request is one command (send_command) or one pipeline (pack_commands, then one
    send): the fault comes after its last reply is read, so Redis has run all of it.
    The handshake after a reconnect, the health-check PING and a cluster client's look at its
    topology (CLUSTER SLOTS, COMMAND) are never touched.
    """

    faults: settings_mod.RedisFaults
    counter_url: str
    _request: tuple | None = None   # (name, replies still to read, lose the last?, what a pipeline holds)
    _resending = False      # the next request is redis-py re-sending the one whose reply was lost
    _quiet = 0              # inside the handshake or a health check

    def send_command(self, *args, **kwargs):
        if not self._quiet:
            name = str(args[0]).upper()
            # A script is known by its first key: "EVALSHA (on ch03:2026-01-15:lock)".
            on = f"on {args[3]}" if name in ("EVAL", "EVALSHA") and len(args) > 3 and str(args[2]) != "0" else ""
            self._begin(name, 1, on)
        return super().send_command(*args, **kwargs)

    def pack_commands(self, commands):
        commands = list(commands)
        names = [str(args[0]).upper() for args in commands]
        transaction = names[:1] == ["MULTI"]
        self._begin("MULTI" if transaction else "PIPELINE", len(commands),
                    _runs(names[1:-1] if transaction else names))
        return super().pack_commands(commands)

    def _begin(self, name: str, replies: int, detail: str = "") -> None:
        resend, self._resending = self._resending, False
        # A cluster client's look at the topology is the client's own, not a write of the pipeline's: redis-py
        # does not retry it (the client would say the cluster is unreachable), so it is never touched.
        lose = not resend and name.split(" ")[0] not in TOPOLOGY and _draw(self.faults) < self.faults.lost_reply
        self._request = (name, replies, lose, detail)

    def read_response(self, *args, **kwargs):
        if self._quiet or self._request is None:
            return super().read_response(*args, **kwargs)
        name, replies, lose, detail = self._request
        self._request = (name, replies - 1, lose, detail) if replies > 1 else None
        try:
            reply = super().read_response(*args, **kwargs)
        except redis.ResponseError:
            if replies > 1 or not lose:
                raise
            # A lost error reply is lost like any other: the re-send will get it again.
        else:
            if replies > 1 or not lose:
                return reply
        self._lose_reply(name, detail)

    def _lose_reply(self, name: str, detail: str) -> None:
        self.disconnect()
        self._resending = True
        _record(name, detail, self.counter_url)
        raise RedisConnectionError(f"REDIS_FAULTS: the reply to {name} was lost on purpose")

    def disconnect(self, *args, **kwargs):
        self._request = None    # a request cut short has no replies left to read
        return super().disconnect(*args, **kwargs)

    def on_connect_check_health(self, *args, **kwargs):
        self._quiet += 1
        try:
            return super().on_connect_check_health(*args, **kwargs)
        finally:
            self._quiet -= 1

    def _send_ping(self):
        self._quiet += 1
        try:
            return super()._send_ping()
        finally:
            self._quiet -= 1


def _runs(names: list[str]) -> str:
    """"SET x10 EVAL HDEL": a pipeline's commands, repeats folded."""
    folded = ((name, len(list(group))) for name, group in itertools.groupby(names))
    return " ".join(name if count == 1 else f"{name} x{count}" for name, count in folded)


# Per process: the draws, and what was injected. Rebuilt in a forked child (another pid).
_state: dict = {"pid": None}


def _process_state() -> dict:
    if _state["pid"] != os.getpid():
        _state.update(pid=os.getpid(), rngs={}, injected=collections.Counter())
    return _state


def _draw(faults: settings_mod.RedisFaults) -> float:
    rngs = _process_state()["rngs"]
    if faults not in rngs:
        rngs[faults] = random.Random(f"{faults.seed}:{os.getpid()}")
    return rngs[faults].random()


def _record(name: str, detail: str, url: str) -> None:
    _process_state()["injected"][name] += 1
    log.warning("REDIS_FAULTS: lost the reply to %s%s: the command ran; redis-py sends it again",
                name, f" ({detail})" if detail else "")
    try:
        _counter(url).hincrby(INJECTED, name, 1)
    except redis.RedisError as error:   # the count is a report, not the pipeline's business
        log.warning("REDIS_FAULTS: could not count the fault in Redis (%s)", error)


@functools.lru_cache(maxsize=4)
def _counter(url: str) -> redis.Redis:
    # A plain client: no faults, no retries (a count sent twice would count twice).
    if url.startswith(settings_mod.CLUSTER_SCHEME + "://"):   # STATE_REDIS_URL: a Redis Cluster
        nodes = [ClusterNode(host, port) for host, port in settings_mod.cluster_nodes(url)]
        return redis.RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=5.0,
                                  socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0))
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5.0, socket_connect_timeout=2.0)


def stats() -> dict[str, int]:
    """Faults injected in this process so far, by command (MULTI or PIPELINE for a pipeline)."""
    return dict(_process_state()["injected"])


def injected(client: redis.Redis) -> dict[str, int]:
    """Faults injected so far by every process on this Redis, by command."""
    return {(name.decode() if isinstance(name, bytes) else name): int(count)
            for name, count in client.hgetall(INJECTED).items()}


def reset() -> None:
    """Start this process's draws and counts again (tests: same seed, same sequence)."""
    _state["pid"] = None
