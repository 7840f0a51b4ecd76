"""Chapter 2: the segments discover -> fetch -> transform -> persist.

Each segment alone, from Redis state seeded by the test, gives the answer key's
result for its step; run twice, it changes nothing; a failing fetch batch leaves
its stations pending, and the next run completes them; the whole pipeline, by
hand or by beat, is complete and correct.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest

from workshop import progress, stations as answer_key

from ch02_segmented import batches, database, fetch, keys, pipeline, stages
from ch02_segmented.app import app, beat_schedule

N = 40          # stations per test: small, so the module stays quick on a busy machine
TIMEOUT = 60.0  # seconds any one segment may take before a test gives up


@pytest.fixture
def worker(embedded_worker):
    return embedded_worker(app, pool="threads", concurrency=2)


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A fresh SQLite file; CH02_DB points every persist task at it."""
    path = tmp_path / "summaries.sqlite3"
    monkeypatch.setenv("CH02_DB", str(path))
    return str(path)


@pytest.fixture
def k(settings):
    return keys.for_day(settings.day)


def run(r, segment: str, k, **options) -> dict:
    counters = pipeline.run_segment(r, segment, k.day, timeout=TIMEOUT, **options)
    raise_for_failed_tasks(r)
    return counters


def raise_for_failed_tasks(r) -> None:
    """A batch task that raised (an exercise not done yet) fails the test with its own error."""
    for key in r.scan_iter(match="celery-task-meta-*"):
        meta = json.loads(r.get(key) or "{}")
        if meta.get("status") == "FAILURE":
            result = meta.get("result") or {}
            pytest.fail(f"a task failed: {result.get('exc_type')}: {result.get('exc_message')}")


def state(r, k) -> dict:
    """Every pipeline key of the day with its type and full value (TTLs aside)."""
    read = {"zset": lambda key: r.zrange(key, 0, -1, withscores=True), "hash": r.hgetall, "string": r.get,
            "list": lambda key: r.lrange(key, 0, -1)}
    return {key: (r.type(key), read[r.type(key)](key)) for key in r.scan_iter(match=k.pattern)}


def members(r, key) -> set[str]:
    return set(stages.members(r, key))


def expected_rows(ids, day, seed, glitch_rate) -> list[dict]:
    return [answer_key.expected_summary(s, day, seed, glitch_rate) for s in sorted(ids)]


def assert_rows_equal(rows: list[dict], expected: list[dict]) -> None:
    assert [row["station"] for row in rows] == [e["station"] for e in expected], "one row per station, once"
    wrong = [row["station"] for row, e in zip(rows, expected) if not answer_key.same_summary(row, e)]
    assert not wrong, f"rows that differ from the answer key: {wrong}"


# ---------------------------------------------------------------- discover

def test_discover_queues_each_listed_station_once_and_never_requeues_work_done(redis, fake_api, worker, k):
    fake_api(stations=N)
    ids = set(answer_key.station_ids(N))
    run(redis, "discover", k)
    assert members(redis, k.stations) == ids and members(redis, k.pending) == ids

    first = state(redis, k)
    run(redis, "discover", k)
    assert state(redis, k) == first

    # Stations that moved on are not queued again by a later discovery.
    moved = sorted(ids)[:5]
    for station in moved:
        stages.move(redis, k.pending, k.fetched, [station])
    run(redis, "discover", k)
    assert members(redis, k.pending) == ids - set(moved)


# ---------------------------------------------------------------- fetch

def test_fetch_alone_stores_each_pending_stations_readings_once(redis, fake_api, worker, settings, k):
    api = fake_api(stations=N, glitch_rate=0.05)
    ids = answer_key.station_ids(N)
    stages.add(redis, k.pending, ids)

    counters = run(redis, "fetch", k)

    assert counters == {"total": N, "done": N, "failed": 0}
    assert members(redis, k.fetched) == set(ids) and not redis.exists(k.pending, k.fetch_errors)
    for station in ids:
        stored = json.loads(redis.get(k.raw(station)))
        assert stored == answer_key.readings(api.config.seed, station, k.day, api.config.glitch_rate)
        assert 0 < redis.ttl(k.raw(station)) <= keys.RAW_TTL
    stats = api.stats()
    assert stats["fetches"] == {station: 1 for station in ids}
    assert stats["requests"] == math.ceil(N / min(settings.batch_size, settings.api_max_batch))

    first = state(redis, k)
    run(redis, "fetch", k)
    assert state(redis, k) == first
    assert api.stats()["requests"] == stats["requests"], "nothing pending: no API call"


@pytest.mark.parametrize("profile", [
    pytest.param({"error_rate": 0.2, "malformed_rate": 0.2}, id="5xx-and-broken-bodies"),
    pytest.param({"rate": 0.1, "burst": 1}, id="429-rate-limited"),
])
def test_a_failing_fetch_batch_leaves_its_stations_pending_and_the_next_run_completes_them(
        redis, fake_api, worker, k, profile):
    api = fake_api(stations=N, **profile)
    ids = set(answer_key.station_ids(N))
    stages.add(redis, k.pending, ids)

    counters = run(redis, "fetch", k)

    pending, fetched, errors = members(redis, k.pending), members(redis, k.fetched), redis.hgetall(k.fetch_errors)
    print(f"\n{profile}: first run {counters}, API {api.stats()['by_status']}")
    assert counters["failed"] > 0 and counters["done"] > 0, "this profile fails some batches, not all"
    assert counters["done"] + counters["failed"] == N
    assert pending | fetched == ids and not pending & fetched, "every station is pending or fetched, once"
    assert len(pending) == counters["failed"] and set(errors) == pending, "each failed station says why"
    assert all(redis.exists(k.raw(s)) for s in fetched) and not any(redis.exists(k.raw(s)) for s in pending)
    if "rate" in profile:
        assert api.stats()["rate_limited"] > 0 and all("429" in why for why in errors.values())

    before = Counter(api.stats()["fetches"])
    api.reset(error_rate=0.0, malformed_rate=0.0, rate=20.0, burst=20)   # the API recovers
    counters = run(redis, "fetch", k)

    assert counters == {"total": len(pending), "done": len(pending), "failed": 0}
    assert members(redis, k.fetched) == ids and not redis.exists(k.pending, k.fetch_errors)
    assert before + Counter(api.stats()["fetches"]) == {s: 1 for s in ids}, "no station fetched twice"
    for station in ids:
        assert json.loads(redis.get(k.raw(station))) == answer_key.readings(api.config.seed, station, k.day)


# ---------------------------------------------------------------- transform

def test_transform_alone_summaries_equal_the_answer_key(redis, worker, settings, k):
    glitch_rate = 0.1   # the summaries must drop implausible hours, as the answer key does
    ids = answer_key.station_ids(N)
    stages.add(redis, k.fetched, ids)
    for station in ids:
        redis.set(k.raw(station), json.dumps(answer_key.readings(settings.seed, station, k.day, glitch_rate)))
    expired = "WX09999"   # in fetched, but its raw readings are gone
    stages.add(redis, k.fetched, [expired])

    run(redis, "transform", k)

    summaries = {s: json.loads(v) for s, v in redis.hgetall(k.summaries).items()}
    assert sorted(summaries) == ids
    wrong = [s for s in ids
             if not answer_key.same_summary(summaries[s],
                                            answer_key.expected_summary(s, k.day, settings.seed, glitch_rate))]
    assert not wrong, f"summaries that differ from the answer key: {wrong}"
    assert sum(s["glitches"] for s in summaries.values()) > 0
    assert members(redis, k.transformed) == set(ids)
    assert members(redis, k.pending) == {expired}, "no readings: back to fetch, not lost"
    assert not redis.exists(k.fetched)

    first = state(redis, k)
    run(redis, "transform", k)
    assert state(redis, k) == first


# ---------------------------------------------------------------- persist

def test_persist_alone_upserts_rows_equal_to_the_answer_key(redis, worker, db, settings, k):
    ids = answer_key.station_ids(N)
    expected = expected_rows(ids, k.day, settings.seed, 0.0)
    redis.hset(k.summaries, mapping={e["station"]: json.dumps(e) for e in expected})
    stages.add(redis, k.transformed, ids)

    run(redis, "persist", k)

    assert_rows_equal(database.rows(db, k.day), expected)
    assert members(redis, k.persisted) == set(ids) and not redis.exists(k.transformed)

    first, rows = state(redis, k), database.rows(db, k.day)
    run(redis, "persist", k)
    assert state(redis, k) == first and database.rows(db, k.day) == rows

    # A crash after the commit but before the ids moved: the next run writes the same
    # rows again, and a summary that changed meanwhile replaces its row.
    redis.rename(k.persisted, k.transformed)
    changed = dict(expected[0], rain_total=expected[0]["rain_total"] + 1.5)
    redis.hset(k.summaries, changed["station"], json.dumps(changed))
    run(redis, "persist", k)
    assert_rows_equal(database.rows(db, k.day), [changed, *expected[1:]])
    assert members(redis, k.persisted) == set(ids) and not redis.exists(k.transformed)


# ---------------------------------------------------------------- end to end

def test_end_to_end_every_station_persisted_once_and_correct(redis, fake_api, worker, db, k):
    api = fake_api(stations=N, glitch_rate=0.05)
    ids = answer_key.station_ids(N)

    pipeline.run_all(redis, k.day, db=db, timeout=TIMEOUT)
    raise_for_failed_tasks(redis)

    assert_rows_equal(database.rows(db, k.day), expected_rows(ids, k.day, api.config.seed, 0.05))
    assert members(redis, k.persisted) == set(ids)
    assert not redis.exists(k.pending, k.fetched, k.transformed, k.fetch_errors)
    assert api.stats()["fetches"] == {s: 1 for s in ids}
    # The answer key's seed and glitch rate come from the API's own config, not the settings.
    checked = pipeline.outcome(redis, k.day, db)
    assert checked == {"stations": N, "done": N, "failed": 0, "missing": 0, "wrong": 0}

    # The whole pipeline again: nothing to do, nothing changes, nothing fetched twice.
    first, rows = state(redis, k), database.rows(db, k.day)
    pipeline.run_all(redis, k.day, db=db, timeout=TIMEOUT)
    assert state(redis, k) == first and database.rows(db, k.day) == rows
    assert api.stats()["fetches"] == {s: 1 for s in ids}


def test_beat_drives_the_segments_to_a_complete_run(redis, fake_api, worker, db, beat_process, k):
    """No one starts anything by hand: beat sends each entry task every second, with no arguments."""
    api = fake_api(stations=30)
    ids = answer_key.station_ids(30)
    started = time.monotonic()
    beat_process("ch02_segmented.app", env={"BEAT_INTERVAL": "1"}, max_interval=1)

    deadline = time.monotonic() + 90
    while stages.count(redis, k.persisted) < len(ids) and time.monotonic() < deadline:
        raise_for_failed_tasks(redis)
        time.sleep(0.2)
    print(f"\nbeat: {stages.count(redis, k.persisted)} of {len(ids)} persisted in {time.monotonic() - started:.1f} s, "
          f"{api.stats()['requests']} API requests, fetches per station {set(api.stats()['fetches'].values())}")

    assert members(redis, k.persisted) == set(ids)
    assert_rows_equal(database.rows(db, k.day), expected_rows(ids, k.day, api.config.seed, 0.0))


# ---------------------------------------------------------------- the kit around the segments

def test_rows_on_a_missing_database_raise_and_create_nothing(tmp_path, monkeypatch):
    wrong = tmp_path / "typo.sqlite3"
    monkeypatch.setenv("CH02_DB", str(wrong))
    with pytest.raises(FileNotFoundError, match="CH02_DB") as raised:
        database.rows()
    assert str(wrong) in str(raised.value)
    assert not wrong.exists(), "reading must not create an empty database"


def test_the_outcome_of_a_day_nothing_reached_the_database_in_is_all_missing_not_an_error(
        redis, k, tmp_path):
    db = tmp_path / "never-written.sqlite3"
    stages.add(redis, k.stations, ["WX00001", "WX00002"])
    redis.hset(k.fetch_errors, "WX00001", "HTTP 503")
    assert pipeline.outcome(redis, k.day, str(db), seed=7, glitch_rate=0.0) == \
        {"stations": 2, "done": 0, "failed": 1, "missing": 1, "wrong": 0}
    assert not db.exists()
    stages.add(redis, k.persisted, ["WX00002"])   # persisted somewhere: then a missing file is a wrong path
    with pytest.raises(FileNotFoundError, match="CH02_DB"):
        pipeline.outcome(redis, k.day, str(db), seed=7, glitch_rate=0.0)


def test_a_tick_with_nothing_to_queue_leaves_running_counters_alone(redis, k):
    key = k.progress("fetch")
    progress.start(redis, key, 10)
    progress.advance(redis, key, done=4)
    assert batches.fan_out(redis, key, fetch.fetch_batch, [], 5, k.day) == {"stations": 0, "batches": []}
    assert progress.counters(redis, key) == {"total": 10, "done": 4, "failed": 0}


def test_the_beat_schedule_reads_beat_interval_when_asked_not_at_import(monkeypatch):
    monkeypatch.setenv("BEAT_INTERVAL", "7")
    schedule = beat_schedule()
    assert {entry["task"].split(".")[1] for entry in schedule.values()} == set(keys.SEGMENTS)
    assert all(entry["schedule"] == 7 for entry in schedule.values())
