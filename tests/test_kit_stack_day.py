"""`python -m workshop stack-day` (what `make day` runs in the stack's jupyter container), here on a Redis, a fake
API and a worker of the stack's app started by the tests: the day it runs equals the answer key."""
from __future__ import annotations

from workshop import stack_day, stations as answer_key

APP = "ch05_reporting.app"   # docker-compose.yml's CELERY_APP default
N = 60


def test_a_day_on_the_stack_runs_to_the_answer_key_and_reports_it(redis, fake_api, worker_processes, monkeypatch,
                                                                   tmp_path, capsys):
    for name, value in {"API_STATIONS": N, "API_MAX_BATCH": 10, "CH02_DB": tmp_path / "db.sqlite3",
                        "CH05_REPORTS": tmp_path / "reports", "DAY": "2026-03-03"}.items():
        monkeypatch.setenv(name, str(value))
    api = fake_api(rate=50, burst=20)
    worker_processes(APP, 1, pool="prefork", concurrency=2)

    assert stack_day.main(["run", str(N)]) == 0
    out = capsys.readouterr().out
    assert f"stack day: {N} stations of 2026-03-03 discovered and kicked" in out
    assert f"{{'stations': {N}, 'done': {N}, 'missing': 0, 'wrong': 0, 'dead': 0}}" in out
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)

    # Finished: `running` says nothing is left (exit 1: CI's mid-run check would fail here), `status` agrees.
    assert stack_day.main(["running", str(N)]) == 1
    assert f"0 of {N} stations still to fetch, loop owner None" in capsys.readouterr().out
    assert stack_day.main(["status"]) == 0
    status = capsys.readouterr().out
    assert '"finished": true' in status and '"fetch": 0' in status
