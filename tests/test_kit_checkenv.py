"""`make check-env`: a missing optional part is a SKIP that says what stands in, never a FAIL before "ready"."""
from __future__ import annotations

from workshop import checkenv


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
