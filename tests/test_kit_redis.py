"""Which Redis the kit uses, in order: REDIS_URL, testcontainers, redis-server on PATH."""
import os
import shutil

import pytest

from workshop import redis_provider, settings as settings_mod
from workshop.redis_provider import NoRedisError, provide_redis


def needs(condition: bool, what: str):
    """Skip on a laptop that lacks `what`; fail in CI, which must exercise every path."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {what}; .ci/run installs it")
        pytest.skip(f"needs {what}")


def no_docker(monkeypatch):
    monkeypatch.setattr(redis_provider, "docker_answers", lambda timeout=3.0: False)


def test_redis_url_wins(redis_server, capsys):
    with provide_redis(settings_mod.load({"REDIS_URL": redis_server.url})) as provided:
        assert provided.source == "REDIS_URL" and provided.client().ping()
    assert capsys.readouterr().out == f"Redis: REDIS_URL at {redis_server.url}\n", "on stdout: information, not an error"


def test_a_dead_redis_url_says_what_to_do():
    with pytest.raises(NoRedisError, match=r"REDIS_URL=redis://127.0.0.1:1/0 does not answer a PING; "
                                           r"start that Redis or unset REDIS_URL\."):
        provide_redis(settings_mod.load({"REDIS_URL": "redis://127.0.0.1:1/0"}))


def test_testcontainers_when_docker_answers(redis_server):
    needs(redis_provider.docker_answers(), "a Docker daemon")
    image = settings_mod.load().redis_image
    with provide_redis(settings_mod.load({"REDIS_IMAGE": image}), announce=False) as provided:
        assert provided.source == "testcontainers" and provided.detail == image
        assert provided.url.split("//")[1].split(":")[0] in ("127.0.0.1", "localhost")  # loopback only
        client = provided.client()
        client.set("k", "v")
        assert client.get("k") == "v"
        assert provided.url != redis_server.url
    assert not redis_provider.ping(provided.url, timeout=0.5)  # the container is gone


def test_redis_server_on_path_without_docker(monkeypatch):
    needs(shutil.which("redis-server"), "redis-server on PATH")
    no_docker(monkeypatch)
    with provide_redis(settings_mod.load({}), announce=False) as provided:
        assert provided.source == "redis-server" and provided.client().ping()
        url = provided.url
    assert not redis_provider.ping(url, timeout=0.5)  # the process is stopped


def test_nothing_available_lists_the_three_ways(monkeypatch):
    no_docker(monkeypatch)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NoRedisError) as caught:
        provide_redis(settings_mod.load({"REDIS_IMAGE": "redis:7-alpine"}))
    message = str(caught.value)
    for way in ("set REDIS_URL", "start Docker", "install redis-server"):
        assert way in message
    assert "redis:7-alpine" in message


def test_a_missing_image_is_not_pulled_when_redis_server_can_stand_in(monkeypatch):
    needs(shutil.which("redis-server"), "redis-server on PATH")
    monkeypatch.setattr(redis_provider, "docker_answers", lambda timeout=3.0: True)
    monkeypatch.setattr(redis_provider, "from_container", lambda image: pytest.fail(f"would pull {image}"))
    with provide_redis(settings_mod.load({"REDIS_IMAGE": "no-such-image:never"}), announce=False) as provided:
        assert provided.source == "redis-server"
