"""Chapters 3-5 with the pipeline's state on a real Redis Cluster (STATE_REDIS_URL), the broker on the session's Redis.

Three masters of redis-server on loopback ports (the `redis_cluster` fixture). First every Lua script of
chapters 2-5 and the kit: read (each `redis.call` names its keys as KEYS[...], tests/cluster_lua.py), then
run through the functions that call it on the cluster, each with a `#!lua` first line so that Redis refuses a
key outside the declared slot even on the same node; every script made in those modules must have run. Then
a whole day of chapters 3, 4 and 5 (with a budget) on the cluster, each equal to the answer key.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import time

import pytest
from redis.cluster import ClusterNode

import cluster_lua
from workshop import lua as lua_mod, progress, settings as settings_mod, stations as answer_key
from workshop.lua import Script

DAY = "2026-06-01"
CHAPTERS = ("ch02_segmented", "ch03_signals", "ch04_rate_limits", "ch05_reporting")
lua_exercises = pytest.mark.exercises("3.4", "4.1", "4.2", "4.4", "5.2")


def modules():
    for chapter in CHAPTERS:
        package = importlib.import_module(chapter)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name not in ("demo", "bench", "bench_scale", "bench_cost", "app"):
                yield importlib.import_module(f"{chapter}.{info.name}")
    yield lua_mod
    yield progress


def loop_end_scripts() -> list[str]:
    """The end script of chapter 3's loop and of chapter 5's (which closes the run), as `Loop.end` makes them."""
    from ch03_signals import loop as ch03_loop, pipeline as ch03_pipeline
    from ch05_reporting import pipeline as ch05_pipeline
    return [lua_mod.once(ch03_loop._END.replace("-- ended", loop.end_lua()))
            for loop in (ch03_pipeline.LOOP, ch05_pipeline.LOOP)]


def every_script() -> dict[str, str]:
    """name -> text of every script: each Script made at module level, the texts sent by register_script or
    EVAL (module-level strings holding `redis.call` that no Script holds), and the loops' end scripts."""
    found = {}
    for module in modules():
        for name, value in vars(module).items():
            if isinstance(value, Script):
                found[f"{module.__name__}.{name}"] = value.text
    made = set(found.values())
    pieces = {"_PROLOGUE", "_EPILOGUE", "_END", "_FAILED_PROLOGUE", "_FAILED"}   # parts of a script: checked as parts, run inside their whole
    for module in modules():
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value and value not in made and name not in pieces \
                    and not any(value in text for text in made):
                found[f"{module.__name__}.{name}"] = value
    for i, text in enumerate(loop_end_scripts()):
        found[f"{('ch03', 'ch05')[i]} Loop.end"] = text
    return found


# ---------------------------------------------------------------- the setting

def test_state_redis_url_unset_keeps_the_state_on_redis_url_and_a_bad_value_says_the_forms(
        redis_server, monkeypatch):
    from workshop import celery_app
    monkeypatch.delenv("STATE_REDIS_URL", raising=False)
    assert celery_app.redis_client() is celery_app._client(redis_server.url)
    monkeypatch.setenv("STATE_REDIS_URL", "")
    assert celery_app.redis_client() is celery_app._client(redis_server.url)
    for bad in ("127.0.0.1:7001", "redis+cluster://127.0.0.1", "redis+cluster://a:1,b", "http://x:1"):
        monkeypatch.setenv("STATE_REDIS_URL", bad)
        with pytest.raises(settings_mod.SettingsError) as error:
            celery_app.redis_client()
        said = str(error.value)
        assert said.startswith(f"STATE_REDIS_URL={bad!r} is not valid") and "redis+cluster://" in said
        assert "redis://host:port/0" in said and said.count(". ") == 0
    assert settings_mod.cluster_nodes("redis+cluster://127.0.0.1:7001, 127.0.0.1:7002") == \
        [("127.0.0.1", 7001), ("127.0.0.1", 7002)]


def test_the_cluster_client_has_the_plain_clients_timeouts_and_retries_and_keeps_pipelines_transactions(cluster):
    from workshop import celery_app
    r = celery_app.redis_client()
    assert isinstance(r, celery_app.StateCluster) and r.retry == celery_app._retry()
    kwargs = r.nodes_manager.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["socket_keepalive"]) == (5.0, 2.0, True)
    with pytest.raises(Exception, match="same slot"):
        with r.pipeline() as p:   # a MULTI, as on redis.Redis: across two slots it fails, it does not half-run
            p.set("a:{day-1}", 1).set("b:{day-2}", 1).execute()
    assert not r.exists("a:{day-1}", "b:{day-2}")
    r.set("a:{day-1}", 1), r.set("b:{day-2}", 1)
    assert r.delete("a:{day-1}", "b:{day-2}") == 2, "a DEL across slots: split by slot"


def test_redis_faults_lose_replies_on_the_cluster_too_and_each_command_runs_as_if_once(cluster, monkeypatch):
    from ch04_rate_limits import leases
    from ch04_rate_limits.keys import for_day
    from ch02_segmented import stages
    from workshop import celery_app, redis_faults
    monkeypatch.setenv("REDIS_FAULTS", "lost-reply:0.5,seed:3")
    celery_app._client.cache_clear()
    try:
        r, k = celery_app.redis_client(), for_day(DAY)
        redis_faults.reset()
        stages.add_new(r, k.stations, k.pending, answer_key.station_ids(20))
        taken = [leases.lease(r, k, 2, 30, f"task-{i}:0") for i in range(10)]
        assert sum(redis_faults.stats().values()) > 0, "some replies were lost on purpose"
        assert sorted(s for batch in taken for s in batch) == answer_key.station_ids(20), \
            "each lease, sent again after a lost reply, took its own two stations once"
    finally:
        celery_app._client.cache_clear()


# ---------------------------------------------------------------- read: every key from KEYS

def test_the_static_check_finds_an_undeclared_key_and_passes_a_declared_one():
    # ce4590b's runs.close: the run's record named in the script, not given in KEYS.
    old_close = """
local run = redis.call('GET', KEYS[1])
if not run then return false end
redis.call('DEL', KEYS[1])
redis.call('HSET', 'run:{' .. run .. '}', 'ended', ARGV[2], 'outcome', ARGV[1])
redis.call('SADD', KEYS[2], run)
return run
"""
    assert cluster_lua.undeclared(old_close) == ["HSET 'run:{' .. run .. '}'"]
    assert cluster_lua.undeclared("local t = redis.call('TIME') redis.call('del', KEYS[1], KEYS[2])") == []
    assert cluster_lua.undeclared("redis.call('DEL', KEYS[1], 'x')") == ["DEL 'x'"]


@lua_exercises
def test_every_script_of_chapters_2_to_5_names_every_key_it_touches_in_keys(redis_server):
    scripts = every_script()
    assert len(scripts) >= 25, f"found only {sorted(scripts)}"
    bad = {name: keys for name, text in scripts.items() if (keys := cluster_lua.undeclared(text))}
    assert not bad, f"scripts that touch a key not given in KEYS (on a Redis Cluster: another slot): {bad}"


# ---------------------------------------------------------------- run: every script on the cluster

@pytest.fixture
def cluster(redis_cluster, redis_server, monkeypatch):
    """The cluster, emptied (scripts too); STATE_REDIS_URL points the pipeline's client at it."""
    for port in redis_cluster.ports:
        with redis_cluster.node(port) as node:
            node.flushall()
            node.script_flush()
    monkeypatch.setenv("STATE_REDIS_URL", redis_cluster.url)
    return redis_cluster


@pytest.fixture
def strict(cluster):
    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.ports]
    client = cluster_lua.StrictCluster(startup_nodes=nodes, decode_responses=True)
    yield client
    client.close()


@lua_exercises
def test_every_script_runs_on_a_cluster_with_its_keys_in_one_slot(strict):
    from ch02_segmented import stages
    from ch03_signals import lock, pipeline as ch03_pipeline
    from ch04_rate_limits import circuit, dead_letters, fetch, leases, limiter, pause, retries
    from ch04_rate_limits.keys import for_day
    from ch04_rate_limits import pipeline as ch04_pipeline
    from ch05_reporting import budget, pipeline as ch05_pipeline, runs
    r, k = strict, for_day(DAY)
    ids = answer_key.station_ids(8)

    assert stages.add_new(r, k.stations, k.pending, ids) == 8
    stages.move(r, k.pending, k.fetched, ids[:1])
    stages.move(r, k.fetched, k.pending, ids[:1])

    loop3 = ch03_pipeline.LOOP
    lk = loop3.keys(DAY)
    assert lock.acquire(r, lk.lock, "owner", 60_000)
    loop3.begin(r, lk, {"db": "x.sqlite3"})
    assert lock.refresh(r, lk.lock, lk.turns, "owner", "0", 0, "task-1", 60_000)
    assert lock.hold(r, lk.lock, "owner", 60_000)
    assert lock.release(r, lk.lock, "owner")
    assert lock.acquire(r, lk.lock, "owner", 60_000)
    assert loop3.end(r, lk, "owner", "finish") == "finished"
    loop3.forget(r, DAY)
    from ch03_signals.messages import Turn
    from ch04_rate_limits import turn as turn_mod
    lk4 = ch04_pipeline.LOOP.keys("2026-02-28")   # a day of its own: nothing pending, the turn taken
    assert lock.acquire(r, lk4.lock, "owner4", 60_000)
    first = Turn("1", 0, "t-0")
    assert turn_mod.take(r, lk4, "owner4", first, first.next(), 60_000, 2, 30) == ("none", [])
    ch04_pipeline.LOOP.forget(r, "2026-02-28")

    limiter.configure(r, limiter.Limit(1000.0, 10))
    assert limiter.GlobalLimiter(r).check() == 0
    assert pause.pause(r, 0.01, "a test") > 0
    down = retries.Failure("5xx", "a test", True)
    assert not circuit.failed(r, down, ids[:2], "call-a:0").open
    assert not circuit.succeeded(r, "call-b:0"), "it was not open"
    circuit.not_probing(r, "call-c:0")

    holder, failure = "task-a:0", retries.Failure("5xx", "a test", True)
    taken = leases.lease(r, k, 4, 30, holder)
    assert taken == ids[:4]
    assert leases.extend(r, k, taken, 30, holder) == 4
    assert retries.count_delivery(r, k, taken, holder).held == taken
    assert retries.start_attempt(r, k, taken, holder, lease=30) == taken
    assert retries.record_cause(r, k, taken, failure, holder) == 4
    assert leases.hand_over(r, k, taken, holder, "task-a:1", 30) == 4
    holder = "task-a:1"
    assert fetch.settle(r, k, taken[:2], {s: [] for s in taken[:2]}, holder) == 2
    assert leases.release(r, k, taken[2:3], holder) == taken[2:3]
    assert dead_letters.bury(r, k, taken[3:], failure, 1, holder) == taken[3:]
    assert dead_letters.set_aside(r, k, k.pending, taken[2], failure, 3)
    more = leases.lease(r, k, 2, 0.001, "task-b:0")
    time.sleep(0.01)
    assert set(leases.reap(r, k)) == set(more)

    run = runs.open(r, DAY, budget_micro=10_000)
    assert budget.reserve(r, run, 2000, "call-1")
    assert budget.settle(r, run, "call-1", ids[:2], 200, 1500, 0.1)
    assert runs.close(r, DAY, "stopped", lk.lock) == run
    loop5 = ch05_pipeline.LOOP
    lk5 = loop5.keys(DAY)
    assert lock.acquire(r, lk5.lock, "owner5", 60_000)
    run2 = runs.open(r, DAY, budget_micro=None)
    assert loop5.end(r, lk5, "owner5", "stop") == "stopped"
    assert runs.current(r, DAY) is None and runs.is_unreported(r, run2)

    progress.advance(r, lk.progress("fetch"), done=2)
    lua_mod.append_once(r, f"history:{{{DAY}}}", {"a": 1}, 10)
    lua_mod.push_once(r, f"log:{{{DAY}}}", ["x"], 10)
    assert lua_mod.incr_once(r, lk.restarts) == 1
    ch05_pipeline.reset(r, DAY)
    assert not r.exists(k.stations, k.pending, k.dead_letters, lk5.lock), "the day forgotten: DEL split by slot"

    not_run = {name for name, text in every_script().items() if text not in strict.ran}
    assert not not_run, f"scripts this test never ran on the cluster: {sorted(not_run)}"


# ---------------------------------------------------------------- a whole day per chapter, the state on the cluster

N, BATCH = 60, 5
TIMEOUT = 60.0


@pytest.fixture
def day_on_cluster(cluster, fake_api, worker_processes, monkeypatch, tmp_path):
    """`start(app)`: the fake API, two prefork workers of `app` with STATE_REDIS_URL in their environment (the
    broker: REDIS_URL, the session's Redis); the pipeline's client on the cluster, and a fresh SQLite file."""
    for name, value in {"API_MAX_BATCH": BATCH, "API_STATIONS": N, "API_GLITCH_RATE": 0.05, "CH04_LEASE": 15,
                        "API_RATE": 20, "API_BURST": 10, "BATCH_SIZE": BATCH,
                        "CH02_DB": tmp_path / "summaries.sqlite3", "CH05_REPORTS": tmp_path / "reports"}.items():
        monkeypatch.setenv(name, str(value))

    def start(app: str):
        from workshop.celery_app import redis_client
        api = fake_api()
        worker_processes(app, 2, pool="prefork", concurrency=1)
        r = redis_client()
        assert type(r).__name__ == "StateCluster", "the pipeline's client is on the cluster"
        return r, api
    return start


def assert_on_the_cluster(r, day: str) -> None:
    """The workers kept the day's state on the cluster: every station persisted there, and none of the day's
    keys on the broker's Redis."""
    import redis
    from ch02_segmented.keys import for_day
    from workshop.celery_app import _redis_url
    k = for_day(day)
    assert r.zcard(k.persisted) == N, "the persist tasks moved every station on the cluster"
    with redis.Redis.from_url(_redis_url()) as broker:
        assert not list(broker.scan_iter(match=f"*{day}*")), "nothing of the day on the broker's Redis"


DONE = {"stations": N, "done": N, "missing": 0, "wrong": 0}


@pytest.mark.exercises("3.1", "3.3", "3.4", "3.5")
def test_a_chapter_3_day_on_the_cluster_equals_the_answer_key(day_on_cluster):
    from ch03_signals import pipeline
    r, api = day_on_cluster("ch03_signals.app")
    assert pipeline.run(r, DAY, N, db=os.environ["CH02_DB"], timeout=TIMEOUT, show=False), \
        f"the loop did not finish: {pipeline.LOOP.status(r, DAY)}"
    assert_on_the_cluster(r, DAY)
    assert pipeline.outcome(r, DAY, os.environ["CH02_DB"]) == {**DONE, "failed": 0}
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)


@pytest.mark.exercises("3.1", "3.3", "3.4", "3.5", "4.1", "4.2", "4.3", "4.4")
def test_a_chapter_4_day_on_the_cluster_equals_the_answer_key(day_on_cluster):
    from ch04_rate_limits import pipeline
    r, api = day_on_cluster("ch04_rate_limits.app")
    assert pipeline.run(r, DAY, N, db=os.environ["CH02_DB"], timeout=TIMEOUT, show=False), \
        f"the loop did not finish: {pipeline.LOOP.status(r, DAY)}"
    assert_on_the_cluster(r, DAY)
    assert pipeline.outcome(r, DAY, os.environ["CH02_DB"]) == {**DONE, "dead": 0}
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)
    assert api.stats()["rate_limited"] == 0


@pytest.mark.exercises("5.1", "5.2", "5.3", "5.4")
def test_a_chapter_5_day_on_the_cluster_with_a_budget_is_reported_as_on_one_redis(day_on_cluster):
    from ch05_reporting import budget, pipeline, prices, reporting
    r, api = day_on_cluster("ch05_reporting.app")
    db = os.environ["CH02_DB"]
    call = prices.to_micro(api.config.price_request) + BATCH * prices.to_micro(api.config.price_station)
    money = 0.6 * (N // BATCH) * call / prices.MICRO
    first = pipeline.run(r, DAY, N, db=db, timeout=TIMEOUT, show=False, budget=money)
    assert first is not None, f"the loop did not end: {pipeline.LOOP.status(r, DAY)}"
    row = reporting.wait(r, first, timeout=30, db=db)
    assert row is not None, f"no report for run {first}"
    bill = round(api.stats()["bill"]["by_day"][DAY] * prices.MICRO)
    assert row["outcome"] == "budget spent" and budget.state(r, first)["spent"] == bill == row["cost_micro"]
    assert row["stations_fetched"] == BATCH * (prices.to_micro(money) // call) == row["done"]

    second = pipeline.run(r, DAY, N, db=db, timeout=TIMEOUT, show=False, budget=1.0)
    row2 = reporting.wait(r, second, timeout=30, db=db)
    assert row2 is not None and row2["outcome"] == "finished" and row2["done"] == N
    assert row2["cost_micro"] == row["to_finish_micro"], "finishing cost what the first report said"
    assert_on_the_cluster(r, DAY)
    assert pipeline.outcome(r, DAY, db) == {**DONE, "dead": 0}
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1), "no station billed twice"
