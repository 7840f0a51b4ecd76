"""Getting a Redis: one function for tests, notebooks and the demo.

In order: REDIS_URL if set; else a testcontainers RedisContainer (image from
REDIS_IMAGE) if a Docker daemon answers (and has the image, when a redis-server
could stand in instead of a pull); else a `redis-server` on PATH, started on a
free port; else one clear error listing the three ways. Whatever is used
is printed once. What this module started, it stops.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import redis

from . import settings as settings_mod

NO_REDIS = (
    "No Redis available: set REDIS_URL to a running Redis (e.g. redis://127.0.0.1:6379/0), "
    "or start Docker so a container of {image} can be run, "
    "or install redis-server (apt install redis-server / brew install redis) so it is on PATH."
)


class NoRedisError(RuntimeError):
    """None of the three ways to get a Redis worked; the message lists them."""


@dataclass
class ProvidedRedis:
    """A Redis to use: its URL, where it came from, and how to let it go."""

    url: str
    source: str  # "REDIS_URL", "testcontainers" or "redis-server"
    detail: str = ""
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, **kwargs)

    def describe(self) -> str:
        return f"Redis: {self.source}{' ' + self.detail if self.detail else ''} at {self.url}"

    def stop(self) -> None:
        stop, self._stop = self._stop, (lambda: None)
        stop()

    def __enter__(self) -> "ProvidedRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def docker_answers(timeout: float = 3.0) -> bool:
    """True when a Docker daemon answers a ping (without pulling or starting anything)."""
    try:
        import docker
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def image_present(image: str) -> bool:
    """True when Docker has `image` locally, so starting it needs no pull."""
    try:
        import docker
        client = docker.from_env(timeout=5)
        try:
            client.images.get(image)
            return True
        finally:
            client.close()
    except Exception:
        return False


def ping(url: str, timeout: float = 2.0) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as r:
            return bool(r.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def from_url(url: str) -> ProvidedRedis:
    if not ping(url):
        raise NoRedisError(f"REDIS_URL={url} does not answer a PING; start that Redis or unset REDIS_URL.")
    return ProvidedRedis(url, "REDIS_URL")


def _redis_container_class():
    try:  # testcontainers 4.15 moved it here
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer
    return RedisContainer


def from_container(image: str) -> ProvidedRedis:
    # Tests reach the container through loopback only, and nothing may be pulled
    # behind our back: no Ryuk (its image would be pulled).
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    container = _redis_container_class()(image=image)
    container.start()
    url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    return ProvidedRedis(url, "testcontainers", image, container.stop)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def from_redis_server(executable: str, timeout: float = 10.0) -> ProvidedRedis:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="workshop-redis-")
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    deadline = time.monotonic() + timeout
    while not ping(url, timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            raise NoRedisError(f"{executable} did not start on port {port}; run it by hand to see why, "
                               "or set REDIS_URL to a Redis that runs.")
        time.sleep(0.05)
    return ProvidedRedis(url, "redis-server", executable, stop)


def provide_redis(settings: settings_mod.Settings | None = None, *, announce: bool = True) -> ProvidedRedis:
    """Get a Redis by the first way that works; print once which one. Call `.stop()` when done."""
    settings = settings or settings_mod.load()
    if settings.redis_url:
        provided = from_url(settings.redis_url)
    elif docker_answers() and (image_present(settings.redis_image) or not shutil.which("redis-server")):
        # A missing image would be pulled: fine on a laptop before the workshop,
        # but a local redis-server is quicker and works offline, so it wins then.
        provided = from_container(settings.redis_image)
    elif shutil.which("redis-server"):
        provided = from_redis_server(shutil.which("redis-server"))
    else:
        raise NoRedisError(NO_REDIS.format(image=settings.redis_image))
    if announce:   # stdout: information (a notebook shows stderr in red, as if it were an error)
        print(provided.describe(), flush=True)
    return provided


_shared: ProvidedRedis | None = None


def shared_redis() -> ProvidedRedis:
    """One Redis for this whole Python process (a notebook kernel, the demo), stopped at exit."""
    global _shared
    if _shared is None:
        _shared = provide_redis()
        atexit.register(_shared.stop)
    return _shared
