"""Chapter 4 at its edges: the loop never stalls, never runs twice, never buries a station for our faults.

Real prefork workers, the fake API and a real Redis, attacked the way production
attacks a pipeline: a pool process killed right after a success and before its
acknowledgement, a batch that kills its own process (or hangs past the hard time
limit) on every delivery, a poison reading the transform cannot take, the limiter
left unconfigured, the API down (every fetch hangs) until a probe finds it back,
and Redis itself restarted mid-run with no beat to repair anything. Each test
checks the outcome against the answer key and the API's own counts. The sabotage lives in tests/sabotage.py, a worker app of its own.
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
from ch04_rate_limits import circuit, dead_letters, keys, limiter, pause, pipeline, retries

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
    # A slow limit, so the day is still running when the message comes back (12 requests at 1/s: at 2/s a busy
    # machine once brought it back after the day's last transform); and a spare pool process in each worker,
    # so the message is taken again at once, not only when the two chains leave a gap.
    use(API_RATE=1, API_BURST=1)
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


# ---------------------------------------------------------------- the API down: the circuit breaker


def test_the_circuit_opens_on_failures_across_batches_not_on_one_batch_counts_a_call_once_and_a_success_closes_it(
        redis, monkeypatch):
    monkeypatch.setattr(circuit, "FIRST", 0.001)   # a pause of 1 ms: the probe's turn comes at once
    limiter.configure(redis, limiter.Limit(10, 5), jitter=0)
    gate, down = limiter.GlobalLimiter(redis), retries.Failure("5xx", "HTTP 503", True)
    batch = ["WX00000", "WX00001"]

    # One batch failing again and again (halved: it keeps its station) is a station at fault, not the API.
    for call, stations in (("a:0", batch), ("a:1", batch), ("b:0", batch[1:]), ("b:1", batch[1:])):
        assert not circuit.failed(redis, down, stations, call).open
    assert circuit.state(redis)["failures"] == 4 and not pause.history(redis)
    assert circuit.succeeded(redis, "c:0") is False, "a success forgets the count (the circuit was not open)"
    assert circuit.state(redis) == {"state": "closed", "kind": None, "failures": 0, "next_probe_in": None}

    # Another kind starts the count again; a call sent twice (redis-py's retry) counts once.
    assert circuit.failed(redis, retries.Failure("timeout", "slow", True), ["WX00010"], "d:0").failures == 1
    assert circuit.failed(redis, down, ["WX00020"], "e:0").failures == 1
    assert circuit.failed(redis, down, ["WX00020"], "e:0") == (False, 1, 0.0, ""), "the same answer"
    assert circuit.failed(redis, down, ["WX00030"], "f:0").failures == 2
    assert circuit.failed(redis, retries.Failure("malformed", "junk", False), ["WX00040"], "g:0") == \
        (False, 2, 0.0, ""), "not a failure the circuit counts"

    # The third in a row, of one kind, across different batches: open, every worker paused, logged why.
    opened = circuit.failed(redis, down, ["WX00040"], "h:0")
    assert opened.open and opened.failures == circuit.AFTER == 3 and opened.event == "opened"
    assert circuit.failed(redis, down, ["WX00040"], "h:0") == opened, "a repeat: the same answer, one pause"
    assert [p["why"] for p in pause.history(redis)] == ["circuit open: 5xx x 3"]
    assert pause.history(redis)[0]["asked"] == circuit.FIRST

    time.sleep(0.05)   # the 1 ms pause is over: half-open
    assert circuit.state(redis)["state"] == "half-open"
    assert gate.check("probe:0") == 0, "one request goes: the probe"
    assert gate.check("other:0") > 0 and gate.check("other:1") > 0, "the others wait for its answer"
    assert not circuit.failed(redis, down, ["WX00050"], "other:0").event, "not the probe: changes nothing"
    reopened = circuit.failed(redis, down, ["WX00000"], "probe:0")
    assert reopened.open and reopened.event == "reopened" and reopened.failures == 4
    assert redis.hget(keys.ApiKeys().circuit, "interval_ms") == "2", "the next pause twice as long"
    assert [p["why"] for p in pause.history(redis)][-1] == "circuit still open: 5xx, the probe failed"

    time.sleep(0.05)
    assert gate.check("probe:1") == 0
    assert circuit.succeeded(redis, "probe:1") is True, "the probe answered: closed"
    assert circuit.succeeded(redis, "probe:1") is True, "a repeat: the same answer"
    assert circuit.succeeded(redis, "later:0") is False
    assert circuit.state(redis)["state"] == "closed" and not redis.exists(keys.ApiKeys().circuit)
    assert pipeline.LOOP.status(redis, DAY)["circuit"]["state"] == "closed"


def test_every_fetch_hanging_past_its_hard_limit_opens_the_circuit_buries_nothing_and_the_day_ends_once_the_api_is_back(
        redis, fake_api, sabotaged, use):
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    hang, k = "sabotage:hang", keys.for_day(DAY)
    # Every fetch hangs while `hang` exists. Set once the kick's two batches (the smallest ids) are fetched: they
    # carry the test process's own time limits, not the workers' 2 s; deleted once a probe failed: the API is back.
    kicked = answer_key.station_ids(N)[:2 * BATCH]
    workers = sabotaged(SABOTAGE_HANG_FETCH="*", SABOTAGE_HANG_WHILE=hang, SABOTAGE_TIME_LIMIT=2)
    seen: dict = {}

    def the_api_goes_down_then_comes_back() -> None:
        if "down" not in seen and all(any(redis.zscore(stage, s) is not None for stage in (
                k.fetched, k.transformed, k.persisted)) for s in kicked):
            seen["down"] = redis.set(hang, "1")
        elif "back" not in seen and "down" in seen and \
                any(p["why"].startswith("circuit still open") for p in pause.history(redis)):
            seen["back"] = {"status": pipeline.LOOP.status(redis, DAY), "hung": int(redis.get("sabotage:hung"))}
            redis.delete(hang)

    outcome = run_day(redis, during=the_api_goes_down_then_comes_back)

    buried = dead_letters.dead_letters(redis, keys.for_day(DAY))
    whys = [p["why"] for p in pause.history(redis)]
    hung = int(redis.get("sabotage:hung") or 0)
    log = workers.log(0) + workers.log(1)
    print(f"{outcome}; calls that hung {hung}, hard time limits {log.count('Hard time limit (2.0s) exceeded')}; "
          f"dead letters {Counter(d['reason'] for d in buried.values())}; pauses {whys}; when the API came back "
          f"{seen.get('back')}")
    assert "down" in seen, "the API went down after the first batches"
    assert not buried, "nothing dead-lettered because the API was down"
    assert seen.get("back"), "the circuit opened, and a probe found the API still down"
    assert seen["back"]["status"]["dead_letters"] == 0 and seen["back"]["status"]["circuit"]["state"] != "closed"
    assert f"circuit open: time limit x {circuit.AFTER}" in whys
    probes = sum(why.startswith("circuit still open") for why in whys)
    # Before it opened: AFTER failures and what the other worker had on its way; after it: the probes alone.
    assert hung <= circuit.AFTER + 1 + probes, "the API asked a bounded number of times while down"
    assert "circuit open: time limit x 3" in log and "circuit closed: the API answered again" in log
    assert outcome == ALL_DONE, "the day finished once the API was back"
    assert served(api.stats()) == Counter(dict.fromkeys(answer_key.station_ids(N), 1)), "each station once"


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
