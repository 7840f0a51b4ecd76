"""Chapter 4 at its edges: the loop never stalls, never runs twice, never buries a station for our faults.

Real prefork workers, the fake API and a real Redis, attacked the way production
attacks a pipeline: a pool process killed right after a success and before its
acknowledgement, a batch that kills its own process (or hangs past the hard time
limit) on every delivery, a poison reading the transform cannot take, the limiter
left unconfigured, and Redis itself restarted mid-run with no beat to repair
anything. Each test checks the outcome against the answer key and the API's own
counts. The sabotage lives in tests/sabotage.py, a worker app of its own.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_py

from workshop import stations as answer_key, target
from workshop.own_redis import OwnRedis

from ch02_segmented import stages
from ch03_signals import error_log, history
from ch04_rate_limits import dead_letters, keys, pipeline, retries

from test_ch04_rate_limits import APP, EXERCISES, BATCH, DAY, N, TIMEOUT, run_day, served, use  # noqa: F401 (use: a fixture)

pytestmark = pytest.mark.exercises(*EXERCISES)   # every test here runs whole days

TESTS = Path(__file__).parent
SABOTAGE = "sabotage"
ALL_DONE = {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}


@pytest.fixture
def sabotaged(worker_processes, monkeypatch):
    """Start two prefork workers of tests/sabotage.py with `sabotaged(SABOTAGE_...=value)`."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))

    def start(concurrency: int = 1, **sabotage):
        for name, value in sabotage.items():
            monkeypatch.setenv(name, str(value))
        return worker_processes(SABOTAGE, 2, pool="prefork", concurrency=concurrency)
    return start


def batches_sent(r, task: str) -> Counter:
    """How many distinct messages (task ids) of `task` carried each batch (by its first station)."""
    runs = {e["task_id"]: e["first"] for e in history.entries(r, DAY, stream=pipeline.HISTORY) if e["task"] == task}
    return Counter(runs.values())


# ---------------------------------------------------------------- a message that comes back


def test_a_pool_process_killed_right_after_a_success_starts_no_second_chain(
        redis, fake_api, sabotaged, use):
    # A slow limit, so the day is still running when the message comes back; and a spare pool process in
    # each worker, so the message is taken again at once, not only when the two chains leave a gap.
    use(API_RATE=2, API_BURST=1)
    api = fake_api()
    workers = sabotaged(concurrency=2, SABOTAGE_KILL_AFTER="fetch_batch")

    outcome = run_day(redis)

    # The loop went on at once (the next batch left before the kill); the message comes back a moment later.
    killed = redis.get("sabotage:killed-after-success")
    assert killed, "a pool process died between a success and its acknowledgement"
    rows = history.wait(redis, DAY, lambda rows: any(e["task_id"] == killed for e in rows), timeout=30,
                        stream=pipeline.HISTORY)
    rerun = next((e for e in rows if e["task_id"] == killed), None)
    assert rerun, "the message came back and ran again"
    print(f"ran again {rerun['started'] - min(e['started'] for e in rows):.1f} s into the day")
    assert rerun["started"] < max(e["started"] for e in rows if e["task"] == "transform_batch"), \
        "while the day was still running"
    assert "signal 9 (SIGKILL)" in workers.log(0) + workers.log(1)
    time.sleep(1)   # what its handler might (wrongly) have sent has run by now
    sent = {task: batches_sent(redis, task) for task in ("fetch_batch", "transform_batch", "persist_batch")}
    persisted = {s: int(n) for s, n in redis.hgetall("sabotage:persisted").items()}
    print(f"killed after the success of {killed}; batches sent {sent}")
    assert outcome == ALL_DONE
    assert all(set(counts.values()) == {1} for counts in sent.values()), "no batch sent twice: one chain"
    assert persisted == dict.fromkeys(answer_key.station_ids(N), 1), "no station persisted twice"
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)


# ---------------------------------------------------------------- a batch that never says it failed


def assert_dead_lettered_alone(r, api, outcome: dict, culprit: str, reason: str) -> None:
    """Only `culprit` dead-lettered, with `reason` after MAX_ATTEMPTS; every other station done, served once."""
    buried = dead_letters.dead_letters(r, keys.for_day(DAY))
    print(f"{outcome}; dead letters {[(s, d['reason'], d['attempts']) for s, d in sorted(buried.items())]}")
    assert outcome == {**ALL_DONE, "done": N - 1, "dead": 1}
    assert {s: (d["reason"], d["attempts"]) for s, d in buried.items()} == {culprit: (reason, retries.MAX_ATTEMPTS)}
    delivered = served(api.stats())
    assert all(delivered[s] == 1 for s in answer_key.station_ids(N) if s != culprit), "the others, once each"


def test_a_fetch_that_kills_its_process_on_every_delivery_is_dead_lettered_alone_as_worker_lost(
        redis, fake_api, sabotaged, use):
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    culprit = answer_key.station_ids(N)[7]   # in the second batch, WX00005..WX00009
    workers = sabotaged(SABOTAGE_KILL_FETCH=culprit)

    outcome = run_day(redis)

    kills = (workers.log(0) + workers.log(1)).count("exited with 'signal 9 (SIGKILL)'")
    print(f"pool processes killed: {kills}")
    # Its batch of 5 once, then 2 (the batch split: a half without it settles), then alone MAX_ATTEMPTS - 2 more
    # times; then dead-lettered at the next delivery. Never a loop of deliveries.
    assert kills <= 2 * retries.MAX_ATTEMPTS
    assert_dead_lettered_alone(redis, api, outcome, culprit, "worker lost")
    assert not api.stats()["fetches"].get(culprit), "killed before it reached the API"


def test_a_fetch_that_kills_its_process_before_its_body_starts_is_dead_lettered_alone_and_the_day_finishes(
        redis, fake_api, sabotaged, use):
    """Killed in task_prerun, on every delivery: the body never runs, so only its receipt (in the worker's
    main process) can count the delivery; and a message left holding nothing is dropped there, its chain
    continued, or it would kill a process on every delivery for ever, and the lead would wait on it."""
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    culprit = answer_key.station_ids(N)[7]   # in the second batch, WX00005..WX00009
    workers = sabotaged(SABOTAGE_KILL_PRERUN=culprit)

    pipeline.ch03_pipeline.discover(DAY)
    pipeline.kick(redis, DAY)
    finished = pipeline.LOOP.wait(redis, DAY, TIMEOUT)
    outcome = pipeline.outcome(redis, DAY)
    kills = {task_id: int(n) for task_id, n in redis.hgetall("sabotage:prerun-kills").items()}
    print(f"finished {finished}; {outcome}; {sum(kills.values())} deliveries killed in prerun "
          f"({len(kills)} messages); status {pipeline.LOOP.status(redis, DAY)}")
    assert finished, "the run finishes"
    # Each delivery that held the culprit counted an attempt at receipt: its batch of 5 once, then smaller
    # batches, then alone, until its receipt dead-letters it (and drops the message). Never a loop of deliveries.
    assert retries.MAX_ATTEMPTS <= sum(kills.values()) <= 2 * retries.MAX_ATTEMPTS
    # A message left holding nothing is dropped in the main process, before any pool process sees it: killed
    # once (twice if it came back stale, its lease expired meanwhile: a stale message runs once, as ever).
    assert max(kills.values()) <= 2
    assert "Discarding revoked task" in workers.log(0) + workers.log(1)
    assert_dead_lettered_alone(redis, api, outcome, culprit, "worker lost")
    assert not api.stats()["fetches"].get(culprit), "killed before it reached the API"


def test_a_fetch_that_always_hits_the_hard_time_limit_is_dead_lettered_alone_as_time_limit(
        redis, fake_api, sabotaged, use):
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    culprit = answer_key.station_ids(N)[21]
    workers = sabotaged(SABOTAGE_HANG_FETCH=culprit, SABOTAGE_TIME_LIMIT=2)

    outcome = run_day(redis)

    limits = (workers.log(0) + workers.log(1)).count("Hard time limit (2.0s) exceeded")
    print(f"hard time limits hit: {limits}")
    assert limits == retries.MAX_ATTEMPTS, "each a counted attempt; the last one dead-letters it"
    assert_dead_lettered_alone(redis, api, outcome, culprit, "time limit")


# ---------------------------------------------------------------- poison in the data


def test_a_poison_reading_is_dead_lettered_alone_and_replay_after_the_fix_completes_the_day(
        redis, fake_api, worker_processes, use):
    use(API_RATE=50, API_BURST=20)
    poison = answer_key.station_ids(N)[37]
    api = fake_api(null_stations=[poison])   # its first hour: "temperature_c": null
    worker_processes(APP, 2, pool="prefork", concurrency=1)

    outcome = run_day(redis)

    buried = dead_letters.dead_letters(redis, keys.for_day(DAY))
    failures = [e for e in error_log.entries(redis, DAY, stream=pipeline.ERRORS) if e["task"] == "transform_batch"]
    print(f"{outcome}; {len(failures)} failed transform batches of sizes {[len(e['batch']) for e in failures]}; "
          f"dead letter {buried}")
    assert outcome == {**ALL_DONE, "done": N - 1, "dead": 1}
    assert list(buried) == [poison] and buried[poison]["reason"] == "poison"
    assert buried[poison]["detail"].startswith("transform: TypeError")
    assert all(poison in e["batch"] for e in failures), "only batches holding the poison failed"
    assert len(failures) <= 2 + (50).bit_length(), "found by halving, not by one failure per station"

    api.configure(null_stations=[])   # the cause is fixed
    assert pipeline.replay(redis, DAY) == [poison]
    assert pipeline.LOOP.wait(redis, DAY, TIMEOUT), pipeline.LOOP.status(redis, DAY)
    assert pipeline.outcome(redis, DAY) == ALL_DONE


# ---------------------------------------------------------------- our faults are not the API's


def test_the_limiter_left_unconfigured_stops_the_loop_with_one_clear_error_and_buries_nothing(
        redis, fake_api, worker_processes, use):
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    worker_processes(APP, 2, pool="prefork", concurrency=1)
    pipeline.ch03_pipeline.discover(DAY)
    pipeline.reset_limits(redis)           # nobody told the limiter the API's limit...
    pipeline.LOOP.kick(redis, DAY)         # ...and the loop is started without pipeline.kick, which would

    stopped = pipeline.LOOP.wait(redis, DAY, TIMEOUT, until=lambda: pipeline.LOOP.running(redis, DAY) is None)
    status = pipeline.LOOP.status(redis, DAY)
    errors = error_log.entries(redis, DAY, stream=pipeline.ERRORS)
    print(f"status {status}; errors {Counter(e['exception'].split(':')[0] for e in errors)}")
    assert not stopped and status["owner"] is None, "the loop stopped"
    assert "configure" in status["stop_switch"], "and says what to configure"
    assert errors and all(e["exception"].startswith("NoLimitError: the loop stopped:") for e in errors)
    k = keys.for_day(DAY)
    assert status["dead_letters"] == 0 and status["in_flight"] == 0
    assert stages.count(redis, k.pending) == N and not redis.exists(k.attempts), "every station back, uncounted"
    assert api.stats()["fetches"] == {}

    assert run_day(redis) == ALL_DONE, "configured and kicked again, the day completes"


# ---------------------------------------------------------------- Redis itself goes away


KICK = """
import sys
from ch04_rate_limits import pipeline
from workshop.celery_app import redis_client
pipeline.ch03_pipeline.discover(sys.argv[1])
print(pipeline.kick(redis_client(), sys.argv[1]))
"""


def test_redis_restarted_mid_run_with_no_beat_the_run_completes_nothing_lost_nothing_twice(
        fake_api, worker_processes, use, monkeypatch, tmp_path):
    """Redis (appendonly) stopped 3 s mid-run and started again on the same port and data: no watchdog
    runs, so the chain of batches itself must ride the outage."""
    use(API_RATE=3, API_BURST=3)
    api = fake_api()
    own = OwnRedis(tmp_path, appendonly=True)
    server = own.start()
    try:
        monkeypatch.setenv("REDIS_URL", own.url)   # the workers and the kick below use this Redis
        r = redis_py.Redis.from_url(own.url, decode_responses=True)
        workers = worker_processes(APP, 2, pool="prefork", concurrency=1)
        started = time.monotonic()
        # Kicked from a process of its own: this one's Celery app is bound to the session's Redis.
        kick = subprocess.run([sys.executable, "-c", KICK, DAY], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": target.pythonpath()})
        assert kick.returncode == 0, kick.stderr[-3000:]
        while stages.count(r, keys.for_day(DAY).fetched) < 2 * BATCH:
            assert time.monotonic() - started < TIMEOUT, pipeline.LOOP.status(r, DAY)
            time.sleep(0.05)
        own.stop(server)   # SIGTERM, a clean shutdown: the append-only file holds every write
        down_at = time.monotonic()
        time.sleep(3)
        own.start()
        print(f"Redis down for {time.monotonic() - down_at:.1f} s, "
              f"{time.monotonic() - started:.1f} s into the run")

        finished = pipeline.LOOP.wait(r, DAY, TIMEOUT)
        status = pipeline.LOOP.status(r, DAY)
        outcome = pipeline.outcome(r, DAY)
        fetches = api.stats()["fetches"]
        print(f"{outcome} in {time.monotonic() - started:.1f} s, status {status}, "
              f"fetched twice {sorted(s for s, n in fetches.items() if n > 1)}")
        assert finished, f"the loop did not finish: {status}; workers' logs:\n{workers.log(0)[-3000:]}"
        assert outcome == ALL_DONE
        assert status["restarts"] == 0, "no watchdog: the chain itself went on"
        assert set(fetches) == set(answer_key.station_ids(N))
        assert sum(n - 1 for n in fetches.values()) <= BATCH, "at most the batch in flight fetched again"
    finally:
        own.stop_all()
