"""`make check-env`: a missing optional part is a SKIP that says what stands in, never a FAIL before "ready"."""
from __future__ import annotations

import pytest

from workshop import checkenv, settings as settings_mod
from workshop.redis_provider import ProvidedRedis


def test_docker_missing_is_a_skip_while_redis_comes_from_elsewhere_and_a_fail_when_nothing_does():
    python = (True, "Python 3.11.7", "")
    no_docker = (False, "Docker daemon answers", "start Docker")
    redis = (True, "Redis reachable via redis-server at /usr/bin/redis-server", "")
    shown = checkenv.verdicts([python, no_docker, redis])
    assert [verdict for verdict, _, _ in shown] == ["OK", "SKIP", "OK"]
    assert "Redis comes from elsewhere" in shown[1][2]

    no_redis = (False, "Redis reachable", "set REDIS_URL ...")
    assert [verdict for verdict, _, _ in checkenv.verdicts([python, no_docker, no_redis])] == ["OK", "FAIL", "FAIL"]


def test_the_command_says_ready_only_without_a_fail(monkeypatch, capsys):
    monkeypatch.setattr(checkenv, "checks", lambda settings: [(True, "Python 3.11.7", ""),
                                                              (False, "Docker daemon answers", "start Docker"),
                                                              (True, "Redis reachable via REDIS_URL=redis://x", "")])
    assert checkenv.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("SKIP  Docker daemon answers") and out[-1] == "ready"
    monkeypatch.setattr(checkenv, "checks", lambda settings: [(False, "package celery", "run `make venv`")])
    assert checkenv.main([]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "not ready: 1 problem(s) above"


def _docker_without(monkeypatch, *, image_here: bool, started=None, server: str | None = None):
    """Docker 'answers' (no Docker needed): the image is there or not, a container starts as `started` says."""
    monkeypatch.setattr(checkenv, "docker_answers", lambda: True)
    monkeypatch.setattr(checkenv, "image_present", lambda image: image_here)
    monkeypatch.setattr(checkenv, "from_container", started or (lambda image: pytest.fail("nothing may start")))
    monkeypatch.setattr(checkenv.shutil, "which", lambda name: server)


def test_a_missing_image_is_named_and_nothing_is_started_or_pulled(monkeypatch):
    _docker_without(monkeypatch, image_here=False)
    found = checkenv.checks(settings_mod.load({"REDIS_IMAGE": "redis:7-alpine"}))
    ok, what, fix = found[1]
    assert not ok
    assert what == "Docker answers, but has no image redis:7-alpine: no container started (nothing is pulled here)"
    assert fix.startswith("`docker pull redis:7-alpine` while online")
    # No redis-server either: nothing would give the tests a Redis without a pull, so both lines fail.
    assert [v for v, w, _ in checkenv.verdicts(found)[1:3]] == ["FAIL", "FAIL"]

    _docker_without(monkeypatch, image_here=False, server="/usr/bin/redis-server")
    shown = checkenv.verdicts(checkenv.checks(settings_mod.load({"REDIS_IMAGE": "redis:7-alpine"})))
    assert [(v, w) for v, w, _ in shown[1:3]] == [
        ("SKIP", "Docker answers, but has no image redis:7-alpine: no container started (nothing is pulled here)"),
        ("OK", "Redis reachable via redis-server at /usr/bin/redis-server")]


def test_the_docker_line_says_what_the_container_did(monkeypatch, redis_server):
    def fails(image):
        raise RuntimeError("Bind for 127.0.0.1:32768 failed: port is already allocated\n(details)")
    _docker_without(monkeypatch, image_here=True, started=fails)
    assert checkenv.redis_container("workshop-redis:local") == (
        False, "Docker answers, but a container of workshop-redis:local did not start",
        "RuntimeError: Bind for 127.0.0.1:32768 failed: port is already allocated; see TROUBLESHOOTING.md, Docker")

    stopped = []
    answering = ProvidedRedis(redis_server.url, "testcontainers", "workshop-redis:local", lambda: stopped.append(1))
    _docker_without(monkeypatch, image_here=True, started=lambda image: answering)
    ok, what, _ = checkenv.redis_container("workshop-redis:local")
    assert ok and what == (f"Docker ran workshop-redis:local: a container answered PING at {redis_server.url}, "
                           "then was removed")
    assert stopped == [1]   # the container is removed after the PING

    silent = ProvidedRedis("redis://127.0.0.1:9/0", "testcontainers", "workshop-redis:local")
    _docker_without(monkeypatch, image_here=True, started=lambda image: silent)
    ok, what, _ = checkenv.redis_container("workshop-redis:local")
    assert not ok and what == ("Docker answers, but a container of workshop-redis:local did not answer PING "
                               "at redis://127.0.0.1:9/0")
