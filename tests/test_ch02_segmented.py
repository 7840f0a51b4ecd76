"""Chapter 2: the segments discover -> fetch -> transform -> persist.

Each segment alone, from Redis state seeded by the test, gives the answer key's
result for its step; run twice, it changes nothing; a failing fetch batch leaves
its stations pending, and the next run completes them; the whole pipeline, by
hand or by beat, is complete and correct.
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from contextlib import closing

import pytest

import explain
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


def unchanged(first: dict, then: dict) -> str:
    """The keys a second run changed, named: a segment run twice must leave Redis as it was."""
    changed = sorted(key for key in set(first) | set(then) if first.get(key) != then.get(key))
    return f"a second run changed {', '.join(changed)}: each segment must be safe to run twice"


def members(r, key) -> set[str]:
    return set(stages.members(r, key))


def expected_rows(ids, day, seed, glitch_rate) -> list[dict]:
    return [answer_key.expected_summary(s, day, seed, glitch_rate) for s in sorted(ids)]


def assert_rows_equal(rows: list[dict], expected: list[dict]) -> None:
    """The rows are one per station, each equal to the answer key; a failure names the station and field."""
    stations = [row["station"] for row in rows]
    twice = sorted({s for s in stations if stations.count(s) > 1})
    assert not twice, f"more than one row for {', '.join(twice)}: one row per (station, date)"
    assert_summaries_equal({row["station"]: row for row in rows}, expected, "rows")


def assert_summaries_equal(got: dict[str, dict], expected: list[dict], what: str) -> None:
    """`got` (station -> summary) holds exactly the expected stations, each equal to the answer key."""
    extra = sorted(set(got) - {e["station"] for e in expected})
    wrong = [e for e in expected if not answer_key.same_summary(got.get(e["station"], {}), e)]
    assert not extra and not wrong, f"{what} against the answer key: " + explain.summaries(
        wrong, [got[e["station"]] for e in wrong if e["station"] in got] + [got[s] for s in extra])


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

@pytest.mark.exercise("2.1")
def test_fetch_alone_stores_each_pending_stations_readings_once(redis, fake_api, worker, settings, k):
    api = fake_api(stations=N, glitch_rate=0.05)
    ids = answer_key.station_ids(N)
    stages.add(redis, k.pending, ids)

    counters = run(redis, "fetch", k)

    assert counters == {"total": N, "done": N, "failed": 0}
    assert members(redis, k.fetched) == set(ids) and not redis.exists(k.pending, k.fetch_errors), \
        f"after fetch: {stages.count(redis, k.pending)} still pending, {stages.count(redis, k.fetched)} of {N} fetched"
    for station in ids:
        stored = redis.get(k.raw(station))
        assert stored is not None and json.loads(stored) == answer_key.readings(
            api.config.seed, station, k.day, api.config.glitch_rate), \
            f"{k.raw(station)} does not hold {station}'s 24 readings as the API served them (JSON)"
        assert 0 < redis.ttl(k.raw(station)) <= keys.RAW_TTL, f"{k.raw(station)} has no expiry (ex=keys.RAW_TTL)"
    stats = api.stats()
    batches_sent = math.ceil(N / min(settings.batch_size, settings.api_max_batch))
    assert stats["fetches"] == {station: 1 for station in ids}
    assert stats["requests"] == batches_sent, f"{stats['requests']} requests for {batches_sent} batches: one each"

    first = state(redis, k)
    run(redis, "fetch", k)
    assert state(redis, k) == first, unchanged(first, state(redis, k))
    assert api.stats()["requests"] == stats["requests"], "nothing pending: no API call"


@pytest.mark.parametrize("profile", [
    pytest.param({"error_rate": 0.2, "malformed_rate": 0.2}, id="5xx-and-broken-bodies",
                 marks=pytest.mark.exercise("2.1")),
    # The same path in fetch_batch (an HTTPError): the chapter's, to keep 2.1's verdict quick.
    pytest.param({"rate": 0.1, "burst": 1}, id="429-rate-limited", marks=pytest.mark.exercises("2.1")),
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
    assert pending | fetched == ids and not pending & fetched, \
        f"every station is pending or fetched, once: in neither {sorted(ids - pending - fetched)}, " \
        f"in both {sorted(pending & fetched)}"
    assert len(pending) == counters["failed"] and set(errors) == pending, \
        f"each failed station stays pending and says why: pending without a reason " \
        f"{sorted(pending - set(errors))}, a reason but not pending {sorted(set(errors) - pending)}"
    assert all(redis.exists(k.raw(s)) for s in fetched), \
        f"fetched without readings: {sorted(s for s in fetched if not redis.exists(k.raw(s)))}"
    assert not any(redis.exists(k.raw(s)) for s in pending), "a failed batch stores no readings"
    if "rate" in profile:
        assert api.stats()["rate_limited"] > 0 and all("429" in why for why in errors.values())

    before = Counter(api.stats()["fetches"])
    api.reset(error_rate=0.0, malformed_rate=0.0, rate=20.0, burst=20)   # the API recovers
    counters = run(redis, "fetch", k)

    assert counters == {"total": len(pending), "done": len(pending), "failed": 0}
    assert members(redis, k.fetched) == ids and not redis.exists(k.pending), \
        f"after the second run, still pending: {sorted(members(redis, k.pending))}"
    assert not redis.exists(k.fetch_errors), \
        f"fetched, but still in fetch:errors: {sorted(redis.hkeys(k.fetch_errors))} (clear a station's error " \
        f"when it is fetched)"
    assert before + Counter(api.stats()["fetches"]) == {s: 1 for s in ids}, "no station fetched twice"
    for station in ids:
        assert json.loads(redis.get(k.raw(station))) == answer_key.readings(api.config.seed, station, k.day), \
            f"{k.raw(station)} does not hold {station}'s readings as the API served them"


# ---------------------------------------------------------------- transform

@pytest.mark.exercise("2.2")
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
    assert_summaries_equal(summaries, [answer_key.expected_summary(s, k.day, settings.seed, glitch_rate)
                                       for s in ids], "k.summaries")
    assert sum(s["glitches"] for s in summaries.values()) > 0
    assert members(redis, k.transformed) == set(ids), \
        f"{stages.count(redis, k.transformed)} of {N} summarised stations moved fetched -> transformed"
    assert members(redis, k.pending) == {expired}, f"{expired} has no readings: back to pending, not lost"
    assert not redis.exists(k.fetched), f"left in fetched: {sorted(members(redis, k.fetched))}"

    first = state(redis, k)
    run(redis, "transform", k)
    assert state(redis, k) == first, unchanged(first, state(redis, k))


# ---------------------------------------------------------------- persist

@pytest.mark.exercise("2.3")
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
    assert state(redis, k) == first, unchanged(first, state(redis, k))
    assert database.rows(db, k.day) == rows, "persisting the same summaries again changed the rows"

    # A crash after the commit but before the ids moved: the next run writes the same
    # rows again, and a summary that changed meanwhile replaces its row.
    redis.rename(k.persisted, k.transformed)
    changed = dict(expected[0], rain_total=expected[0]["rain_total"] + 1.5)
    redis.hset(k.summaries, changed["station"], json.dumps(changed))
    run(redis, "persist", k)
    assert_rows_equal(database.rows(db, k.day), [changed, *expected[1:]])
    assert members(redis, k.persisted) == set(ids) and not redis.exists(k.transformed)


def upsert_twice(db: str, day: str, seed: int) -> list[dict]:
    """Upsert three summaries, then the same three with one changed (a rerun after a crash, a corrected
    summary); the rows there must be now."""
    first = expected_rows(answer_key.station_ids(3), day, seed, 0.0)
    then = [dict(first[0], rain_total=round(first[0]["rain_total"] + 1.5, 2)), *first[1:]]
    for summaries in (first, then):
        with closing(database.connect(db)) as conn, conn:
            try:
                database.upsert(conn, summaries)
            except sqlite3.IntegrityError as error:
                pytest.fail(f"the second write of the same (station, date) raised {error}: an upsert "
                            f"updates the row already there")
    return then


@pytest.mark.exercise("2.3")
def test_upsert_twice_keeps_one_row_per_station_with_the_newer_values(db, k, settings):
    expected = upsert_twice(db, k.day, settings.seed)
    assert_rows_equal(database.rows(db, k.day), expected)


@pytest.mark.wrong_attempt("2.3")
def test_an_upsert_that_ignores_conflicts_is_named_by_its_stale_field(db, k, settings, monkeypatch):
    """The common first try of 2.3, INSERT OR IGNORE: no error, no duplicate, and a stale row the
    verdict names by station and field."""
    def insert_or_ignore(conn, summaries):
        names = ", ".join(database.COLUMNS)
        conn.executemany(f"INSERT OR IGNORE INTO {database.TABLE} ({names}) "
                         f"VALUES ({', '.join(':' + c for c in database.COLUMNS)})", summaries)
    monkeypatch.setattr(database, "upsert", insert_or_ignore)
    expected = upsert_twice(db, k.day, settings.seed)
    with pytest.raises(AssertionError) as failed:
        assert_rows_equal(database.rows(db, k.day), expected)
    stale = database.rows(db, k.day)[0]
    assert f"WX00000: rain_total {expected[0]['rain_total']:g} expected, got {stale['rain_total']:g}" \
        in str(failed.value)


# ---------------------------------------------------------------- end to end

@pytest.mark.exercises("2.1", "2.2", "2.3")   # the whole pipeline: the chapter's, not one exercise's
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
    assert state(redis, k) == first, unchanged(first, state(redis, k))
    assert database.rows(db, k.day) == rows, "the pipeline run again changed the rows"
    assert api.stats()["fetches"] == {s: 1 for s in ids}


@pytest.mark.exercises("2.1", "2.2", "2.3")
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
