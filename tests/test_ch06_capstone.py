"""Chapter 6: the capstone, measured. The pieces (what the broker holds unacknowledged, Flower's view of the
workers), then whole runs on real worker processes: periodic vs looped on one day, checked against the
API's own counts, bill and the answer key; and Redis (append-only) restarted mid-run under the naive
pipeline and under chapter 5's. Scale-out has a module of its own (test_ch06_scale.py)."""
from __future__ import annotations

import time
from collections import Counter

import pytest
from celery import Celery
from kombu import Connection

import explain
from workshop import stations as answer_key
from workshop.api import ApiConfig
from workshop.workers import WorkerProcesses

from ch03_signals import benchmark
from ch05_reporting import prices
from ch06_capstone import naive, restart, side_by_side, watch

DAY = "2026-02-02"


def sender(url: str) -> Celery:
    return Celery("ch06-test-sender", broker=url, set_as_current=False)


# ---------------------------------------------------------------- the pieces

@pytest.mark.exercise("6.1")
def test_stranded_lists_what_redis_holds_delivered_and_unacknowledged_oldest_first(redis, redis_server):
    ids = answer_key.station_ids(9)
    app = sender(redis_server.url)
    for i in range(0, 9, 3):
        app.send_task(naive.TASK, args=[ids[i:i + 3], DAY], queue="ch06-test")
    app.close()
    assert restart.stranded(redis) == [], "queued messages are not unacknowledged ones"
    with Connection(redis_server.url) as connection:
        queue = connection.SimpleQueue("ch06-test")
        first = queue.get(timeout=5)          # delivered, not acknowledged: kombu keeps it in `unacked`
        time.sleep(0.3)
        second = queue.get(timeout=5)
        messages = restart.stranded(redis)
        print(messages)
        assert len(messages) == 2, f"two messages delivered and not acknowledged; stranded listed {len(messages)}"
        assert [m["stations"] for m in messages] == [ids[0:3], ids[3:6]], \
            f"oldest first, each with the stations of its args[0]: expected {[ids[0:3], ids[3:6]]}, " \
            f"got {[m['stations'] for m in messages]}"
        assert [m["id"] for m in messages] == [first.headers["id"], second.headers["id"]], \
            "each message's id is the task id in its headers"
        assert {m["task"] for m in messages} == {naive.TASK}, \
            f"each message's task is the name in its headers ({naive.TASK}), got {[m['task'] for m in messages]}"
        assert messages[0]["age"] > messages[1]["age"] + 0.2 and messages[1]["age"] >= 0, \
            f"ages {[m['age'] for m in messages]}: seconds since delivery (now - its unacked_index score, " \
            f"epoch seconds), the first delivered 0.3 s before the second"
        assert restart.stations_in(messages) == set(ids[:6])
        first.ack()
        assert [m["id"] for m in restart.stranded(redis)] == [second.headers["id"]], "acknowledged: gone"
        second.ack()
        queue.close()
    assert restart.stranded(redis) == []


@pytest.mark.exercises("6.2")   # real workers and a real Flower: the chapter's check, not 6.2's verdict
def test_flower_sees_every_worker_and_every_task_it_ran(redis, redis_server, fake_api, tmp_path):
    fake_api(rate=1000, burst=1000, error_rate=0.0, slow_rate=0.0, malformed_rate=0.0)
    ids = answer_key.station_ids(40)
    with watch.Flower("ch06_capstone.naive", log_dir=str(tmp_path)) as watching, \
            WorkerProcesses("ch06_capstone.naive", 2, extra_args=("-E",), loglevel="WARNING",
                            log_dir=str(tmp_path)) as workers:
        app = sender(redis_server.url)
        for i in range(0, 40, 4):
            app.send_task(naive.TASK, args=[ids[i:i + 4], DAY], queue=naive.QUEUE)
        app.close()
        deadline, rows = time.monotonic() + 20, {}
        while time.monotonic() < deadline:
            rows = watch.summary(watch.workers(watching.url), watch.tasks(watching.url))
            if sum(row["succeeded"] for row in rows.values()) == 10 and \
                    sum(row["processed"] for row in rows.values()) == 10:
                break
            time.sleep(0.3)
    print(rows)
    assert sorted(rows) == sorted(workers.names)
    assert all(row["processes"] == 1 and row["active"] == 0 and row["failed"] == 0 for row in rows.values())
    assert sum(row["processed"] for row in rows.values()) == 10, "each worker's own count, summed: every task"
    assert sum(row["succeeded"] for row in rows.values()) == 10, "Flower saw every task succeed (events)"
    assert all(row["succeeded"] == row["processed"] for row in rows.values())


# What Flower 2.2 answered in that test, cut to what `summary` reads. /api/workers?refresh=1 (every worker)
# holds stats, registered, conf, active_queues: `active` is there only when one worker is asked for
# (?workername=); a worker that did not answer the stats broadcast in time has no "stats".
WORKERS = {
    "worker0@host": {"stats": {"total": {"ch06.naive.fetch_batch": 5, "workshop.selfcheck.fetch_batch": 1},
                               "pool": {"max-concurrency": 2, "processes": [23701, 23702]}, "prefetch_count": 8},
                     "registered": ["ch06.naive.fetch_batch"], "timestamp": 1796533942.57},
    "worker1@host": {"stats": {"total": {"ch06.naive.fetch_batch": 3}, "pool": {"processes": [23767]}},
                     "active": [{"id": "t9", "name": "ch06.naive.fetch_batch"}],
                     "registered": ["ch06.naive.fetch_batch"], "timestamp": 1796533942.57},
}
TASKS = {f"t{i}": {"uuid": f"t{i}", "name": "ch06.naive.fetch_batch", "state": state, "worker": worker}
         for i, (worker, state) in enumerate([("worker0@host", "SUCCESS")] * 4 + [("worker0@host", "FAILURE")]
                                              + [("worker1@host", "SUCCESS")] * 2 + [("worker1@host", "FAILURE")]
                                              + [("worker1@host", "STARTED"), ("worker1@host", "STARTED")])}
SILENT = {"registered": ["ch06.naive.fetch_batch"], "timestamp": 1796533942.57}   # answered, but not `stats`


def assert_summary(worker_view: dict, task_view: dict, expected: dict) -> None:
    """watch.summary's rows equal `expected`; a failure names the worker and the field."""
    lacking = {field: [name for name, view in sorted(worker_view.items()) if field not in view]
               for field in ("stats", "active")}
    try:
        rows, raised = watch.summary(worker_view, task_view), None
    except (KeyError, TypeError, AttributeError) as error:
        rows, raised = None, f"{type(error).__name__}: {error}"
    if raised:   # out of the except block: the sentence alone, not the library's traceback under it
        pytest.fail(f"watch.summary raised {raised}; Flower's view of {', '.join(lacking['stats']) or 'no worker'} "
                    f"has no 'stats' (it did not answer in time), of {', '.join(lacking['active']) or 'no worker'} "
                    f"no 'active' (asked only per worker): count what is not there as empty")
    assert rows == expected, f"watch.summary, worker by worker: {explain.by_name(expected, rows)}"


@pytest.mark.exercise("6.2")
def test_summary_is_one_row_per_worker_from_its_stats_and_the_tasks_flower_saw():
    assert_summary(WORKERS, TASKS, {
        "worker0@host": {"processes": 2, "processed": 6, "active": 0, "succeeded": 4, "failed": 1},
        "worker1@host": {"processes": 1, "processed": 3, "active": 1, "succeeded": 2, "failed": 1}})
    assert_summary(WORKERS, {}, {   # workers without events (-E): Flower saw no task, the counts still come
        "worker0@host": {"processes": 2, "processed": 6, "active": 0, "succeeded": 0, "failed": 0},
        "worker1@host": {"processes": 1, "processed": 3, "active": 1, "succeeded": 0, "failed": 0}})


@pytest.mark.exercise("6.2")
def test_a_worker_that_did_not_answer_in_time_is_a_row_of_zeros_not_an_error():
    assert_summary({**WORKERS, "worker2@host": SILENT}, TASKS, {
        "worker0@host": {"processes": 2, "processed": 6, "active": 0, "succeeded": 4, "failed": 1},
        "worker1@host": {"processes": 1, "processed": 3, "active": 1, "succeeded": 2, "failed": 1},
        "worker2@host": {"processes": 0, "processed": 0, "active": 0, "succeeded": 0, "failed": 0}})


@pytest.mark.wrong_attempt("6.2")
def test_a_summary_without_the_fallback_is_named_by_the_worker_that_did_not_answer(monkeypatch):
    """The common first try of 6.2, view["stats"] read as if every worker answered: right on every answer
    of the live tests, and the verdict names the worker that did not answer."""
    def trusting(worker_view, task_view):
        states = Counter((t["worker"], t["state"]) for t in task_view.values())
        return {name: {"processes": len(view["stats"]["pool"]["processes"]),
                       "processed": sum(view["stats"]["total"].values()), "active": len(view.get("active", [])),
                       "succeeded": states[(name, "SUCCESS")], "failed": states[(name, "FAILURE")]}
                for name, view in worker_view.items()}
    monkeypatch.setattr(watch, "summary", trusting)
    test_summary_is_one_row_per_worker_from_its_stats_and_the_tasks_flower_saw()   # every worker answered: right
    with pytest.raises(pytest.fail.Exception) as failed:
        test_a_worker_that_did_not_answer_in_time_is_a_row_of_zeros_not_an_error()
    assert "raised KeyError: 'stats'; Flower's view of worker2@host has no 'stats'" in str(failed.value)


def test_the_run_log_predicts_which_stations_the_periodic_pipeline_leaves_missing():
    from ch01_periodic.runs import Run
    runs = [Run(start=0, size=4, done=4), Run(start=4, size=4, done=1, error="HTTPError: 429"),
            Run(start=4, size=4, done=3, error="HTTPError: 503"), Run(start=8, size=2, done=2)]
    assert side_by_side.predicted_missing(runs, 12) == 1 + 2, "index 7 of the failed slice, 10 and 11 never taken"


# ---------------------------------------------------------------- whole runs

N = 60


def expected_cost(f: dict, stations_per_ok: int | None) -> int:
    """The bill by the published terms (2xx billed): a request price per successful answer, a station price
    per station it returned (`stations_per_ok` each, or every station once)."""
    ok = f["requests"] - f["429s"] - f["errors"]
    request, station = prices.to_micro(ApiConfig.price_request), prices.to_micro(ApiConfig.price_station)
    return ok * request + (ok * stations_per_ok if stations_per_ok else f["done"] + f["wrong"]) * station


def test_periodic_and_looped_side_by_side_agree_with_the_api_and_the_answer_key(
        redis, monkeypatch, tmp_path, settings):
    monkeypatch.setenv("SLICE_SIZE", "20")
    monkeypatch.setenv("BEAT_INTERVAL", "1")
    monkeypatch.setenv("API_MAX_BATCH", "10")
    config = benchmark.api_config(settings, N, 0.1, rate=10.0, burst=10)
    results = side_by_side.run(redis, config, answer_key.station_ids(N), 60, str(tmp_path))
    print()
    print(side_by_side.table(results))
    periodic, looped = results[side_by_side.PERIODIC], results[side_by_side.LOOPED]

    assert looped["over"] and looped["done"] == N and looped["missing"] == looped["wrong"] == 0
    assert looped["twice"] == 0 and looped["429s"] == 0, "paced by the global limiter, each station once"
    assert looped["cost"] == expected_cost(looped, None), "the API's bill: every station billed once"

    assert periodic["over"], "the schedule went round"
    assert periodic["missing"] == periodic["predicted_missing"] > 0, "what its run log predicts"
    assert periodic["runs_failed"] >= 1 and periodic["wrong"] == 0
    assert periodic["cost"] == expected_cost(periodic, 1), "one station per billed request"
    assert periodic["stations/s"] < looped["stations/s"]

    for f in (periodic, looped):   # the timeline counts what was stored, up to the end of the run
        assert f["timeline"] and f["timeline"][-1][1] == f["done"] + f["wrong"]
        assert all(a[1] <= b[1] for a, b in zip(f["timeline"], f["timeline"][1:])), "never down"


@pytest.fixture
def fast_api(fake_api, monkeypatch):
    """A faultless API far above what two workers ask, every request 20 ms: the restart is what they meet."""
    monkeypatch.setenv("API_MAX_BATCH", "10")
    return fake_api(stations=2000, max_batch=10, **restart.FAST_API)


@pytest.mark.exercises("6.1")
def test_a_redis_restart_strands_the_naive_pipelines_prefetched_messages_for_the_visibility_timeout(
        redis, fast_api, tmp_path):
    day = restart.naive_day(fast_api, 600, str(tmp_path), wait_after=4.0)
    print({k: v for k, v in day.items() if not k.endswith("_stations")})
    stranded, missing = set(day["stranded_stations"]), set(day["missing_stations"])
    assert day["visibility_timeout"] == 3600 and day["stranded"] >= 1, "prefetched messages were stranded"
    assert stranded <= missing, "every station of a stranded message is missing"
    assert day["stored_after_worker_restart"] == day["stored"] == 600 - len(missing), \
        "restarting the workers brings none back"


@pytest.mark.exercises("6.1")   # what the loop leaves unacknowledged is read too
def test_a_redis_restart_mid_run_loses_nothing_of_the_looped_pipeline(redis, fast_api, tmp_path):
    day = restart.looped_day(fast_api, 600, str(tmp_path))
    print(day)
    assert day["finished"] and day["done"] == 600 and day["missing"] == day["wrong"] == day["dead"] == 0
    assert day["down"] >= restart.DOWN_SECONDS
    assert day["fetched_twice"] <= 10, "at most the batch in flight fetched again"
