"""Chapter 1: the monolith on a timer works on a clean day, and each of its failure modes is real.

The failure-mode tests characterise defects that later chapters fix: each runs
the pipeline for real (celery beat + worker(s) + the fake API), measures the
defect, prints the figure (`pytest -s` shows them) and asserts it is there.
"""
from __future__ import annotations

import time

import pytest
import requests

import explain
from workshop import progress, settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, draw_fault
from workshop.workers import EmbeddedBeat

from ch01_periodic import measure, pipeline, runs
from ch01_periodic.app import app, beat_schedule
from ch01_periodic.keys import key

DAY = settings_mod.load().day.isoformat()   # the day the pipeline works on (DAY, default 2026-01-15)


def use(monkeypatch, **settings) -> None:
    """Set chapter settings (BEAT_INTERVAL=..., SLICE_SIZE=...) for this test, workers included."""
    for name, value in settings.items():
        monkeypatch.setenv(name.upper(), str(value))


def run_the_day(r, timeout: float = 60.0) -> float:
    """celery beat in this process until the schedule went round; returns the seconds it took."""
    app.conf.beat_schedule = beat_schedule()   # this test's BEAT_INTERVAL
    started = time.monotonic()
    with EmbeddedBeat(app, max_interval=0.2):
        went_round = runs.wait(r, DAY, timeout)
    assert went_round, f"the schedule did not go round in {timeout:.0f} s; run log: {runs.log(r, DAY)}"
    return time.monotonic() - started


def outcome(api, r, count: int) -> dict:
    return measure.figures(api.stats(), pipeline.summaries(r, DAY), answer_key.station_ids(count), DAY)


# --------------------------------------------------------------------------- the pieces


def assert_slice(taken: tuple[int, list[str]], cursor: int, expected: list[str], size: int) -> None:
    """take_slice's answer against the cursor and the ids it should hold; a failure names the ids."""
    start, ids = taken
    assert start == cursor, f"take_slice answered the cursor as {start}, but it is {cursor} (0 before the first run)"
    extra, missing = [s for s in ids if s not in expected], [s for s in expected if s not in ids]
    assert ids == expected, (
        f"the slice of size {size} from cursor {cursor}: {len(ids)} ids, {len(expected)} expected"
        + (f"; {', '.join(extra)} taken too (LRANGE's end is inclusive)" if extra else "")
        + (f"; {', '.join(missing)} not taken" if missing else "")
        + ("" if extra or missing else "; same ids in another order"))


@pytest.mark.exercise("1.1")
def test_taking_a_slice_reads_the_cursor_and_stops_at_the_end_of_the_day(redis):
    pipeline.plan_day(redis, DAY, answer_key.station_ids(25))
    assert_slice(pipeline.take_slice(redis, DAY, 10), 0, answer_key.station_ids(10), 10)
    # Taking does not move the cursor: a second run that starts now takes the same slice.
    assert_slice(pipeline.take_slice(redis, DAY, 10), 0, answer_key.station_ids(10), 10)
    assert redis.get(key(DAY, "cursor")) is None, "take_slice must only read: the cursor moves when a run ends"
    redis.set(key(DAY, "cursor"), 20)
    assert_slice(pipeline.take_slice(redis, DAY, 10), 20, answer_key.station_ids(5, start=20), 10)
    redis.set(key(DAY, "cursor"), 25)
    assert_slice(pipeline.take_slice(redis, DAY, 10), 25, [], 10)   # past the end: nothing wraps around


@pytest.mark.wrong_attempt("1.1")
def test_a_slice_one_too_long_is_named_by_its_extra_station(redis, monkeypatch):
    """The common first try of 1.1, LRANGE to start + size: the verdict names the station taken too."""
    def one_too_many(r, day, size):
        start = int(r.get(key(day, "cursor")) or 0)
        return start, r.lrange(key(day, "stations"), start, start + size)
    monkeypatch.setattr(pipeline, "take_slice", one_too_many)
    pipeline.plan_day(redis, DAY, answer_key.station_ids(25))
    with pytest.raises(AssertionError) as failed:
        assert_slice(pipeline.take_slice(redis, DAY, 10), 0, answer_key.station_ids(10), 10)
    assert "11 ids, 10 expected; WX00010 taken too" in str(failed.value)


@pytest.mark.exercise("1.3")
def test_utilisation_is_accepted_requests_per_second_over_the_allowed_rate():
    stats = {"accepted": 30, "first_request_at": 100.0, "last_request_at": 110.0, "config": {"rate": 6.0}}
    assert measure.utilisation(stats) == pytest.approx(0.5), \
        "30 accepted requests from the first (t=100) to the last (t=110) are 3/s of the 6/s allowed: 0.5"
    assert measure.utilisation(stats, seconds=20) == pytest.approx(0.25), \
        "given seconds=20, the 30 accepted requests are 1.5/s of 6/s: 0.25"
    assert measure.utilisation({**stats, "last_request_at": 100.0}) == 0.0, "no time passed: 0.0, not an error"


@pytest.mark.exercises("1.1", "1.2")
def test_hard_to_test_no_step_runs_without_a_live_api(redis, monkeypatch):
    """To check the summary or the store, you must run the whole task against a real API."""
    pipeline.plan_day(redis, DAY, answer_key.station_ids(10))      # even with discovery done for it
    monkeypatch.setenv("API_URL", "http://127.0.0.1:9")            # nothing listens there
    with pytest.raises(requests.ConnectionError):
        pipeline.run_slice()                                        # the task's body, called in-process
    assert redis.hlen(key(DAY, "summaries")) == 0                   # nothing summarised, nothing stored
    assert redis.get(key(DAY, "cursor")) == "10"                    # and the slice is gone for the day


# --------------------------------------------------------------------------- one run, in this process


def differences(stored: dict[str, dict], expected: list[dict]) -> str | None:
    """None when every expected summary is stored and equals the answer key; else the stations and fields."""
    wrong = [e for e in expected if not answer_key.same_summary(stored.get(e["station"], {}), e)]
    return explain.summaries(wrong, [stored[e["station"]] for e in wrong if e["station"] in stored]) \
        if wrong else None


def slice_failing_at(config: ApiConfig, position: int, size: int) -> list[str]:
    """`size` station ids whose one-station requests the fault profile answers with 200, but the one at
    `position`, which it fails: the slice an API error ends in the middle."""
    ok, failing = [], []
    for station in answer_key.station_ids(200):
        (ok if draw_fault(config, ((station,), DAY), 0)[0] == "ok" else failing).append(station)
    return ok[:position] + failing[:1] + ok[position:size - 1]


@pytest.mark.exercises("1.1")
@pytest.mark.exercise("1.2")
def test_run_slice_stores_each_station_of_its_slice_equal_to_the_answer_key(fake_api, redis, monkeypatch):
    """run_slice called here, as the worker would: one request per station, the cursor past the slice,
    progress counted once per station, whatever runs again."""
    api = fake_api(stations=12, glitch_rate=0.1, rate=1000, burst=1000)
    use(monkeypatch, slice_size=5)
    ids = answer_key.station_ids(12)
    pipeline.plan_day(redis, DAY, ids)

    runs_answered = [pipeline.run_slice() for _ in range(3)]

    assert runs_answered == [{"start": 0, "taken": 5, "done": 5}, {"start": 5, "taken": 5, "done": 5},
                             {"start": 10, "taken": 2, "done": 2}], \
        f"three runs over 12 stations in slices of 5 answered {runs_answered}: starts 0, 5, 10, every station done"
    assert redis.get(key(DAY, "cursor")) == "12", "after each run the cursor is past its slice"
    expected = [answer_key.expected_summary(s, DAY, api.config.seed, 0.1) for s in ids]
    stored = pipeline.summaries(redis, DAY)
    assert (wrong := differences(stored, expected)) is None, f"summaries against the answer key: {wrong}"
    assert sorted(stored) == ids
    stats = api.stats()
    assert stats["fetches"] == {s: 1 for s in ids} and stats["requests"] == 12, \
        f"one request per station: {stats['requests']} requests for 12 stations, fetches {stats['fetches']}"
    assert progress.counters(redis, key(DAY, "progress")) == {"total": 12, "done": 12, "failed": 0}

    redis.set(key(DAY, "cursor"), 0)   # a late run takes the first slice again
    assert pipeline.run_slice() == {"start": 0, "taken": 5, "done": 5}
    assert progress.counters(redis, key(DAY, "progress"))["done"] == 12, \
        "a summary stored again is not progress: count a station when hset answers 1 (a new field)"


@pytest.mark.exercises("1.1")
@pytest.mark.exercise("1.2")
def test_an_api_error_ends_the_run_and_the_cursor_still_moves_past_the_slice(fake_api, redis, monkeypatch):
    """The lost data, one run: the stations before the failing one are stored, it and the rest are not,
    the error is not caught, and the cursor moves on, so no later run asks for them."""
    api = fake_api(stations=200, error_rate=0.2, rate=1000, burst=1000)
    use(monkeypatch, slice_size=6)
    ids = slice_failing_at(api.config, position=2, size=6)
    pipeline.plan_day(redis, DAY, ids)

    status = draw_fault(api.config, ((ids[2],), DAY), 0)[1]
    try:
        pipeline.run_slice()
    except requests.HTTPError:
        pass   # the API's error ends the run, uncaught: that is the monolith
    else:
        pytest.fail(f"run_slice returned although the request for {ids[2]} failed (HTTP {status}): let the "
                    f"error end the run (no except); the cursor still moves, in finally")

    stored = pipeline.summaries(redis, DAY)
    assert sorted(stored) == sorted(ids[:2]), (
        f"stored {sorted(stored)}; expected only {ids[:2]}: the request for {ids[2]} fails (HTTP {status}), "
        f"which ends the run")
    expected = [answer_key.expected_summary(s, DAY, api.config.seed) for s in ids[:2]]
    assert (wrong := differences(stored, expected)) is None, f"summaries against the answer key: {wrong}"
    assert api.stats()["requests"] == 3, "no request after the one that failed"
    assert redis.get(key(DAY, "cursor")) == "6", "the cursor moves past the slice even when the run fails"
    assert [(run.size, run.done) for run in runs.log(redis, DAY)] == [(6, 2)], "run.done counts the stored"
    assert pipeline.run_slice() == {"start": 6, "taken": 0, "done": 0}   # the rest is lost for the day
    assert sorted(pipeline.summaries(redis, DAY)) == sorted(ids[:2])


# --------------------------------------------------------------------------- a clean day


@pytest.mark.exercises("1.1", "1.2", "1.3")   # a whole day: the chapter's, not one exercise's
def test_on_a_clean_day_every_summary_equals_the_answer_key(fake_api, embedded_worker, redis, monkeypatch):
    # A good day: no faults (sensor glitches are data the summary must drop), a generous rate
    # limit, and one worker slot, so runs cannot overlap however slow this machine is today.
    api = fake_api(stations=30, glitch_rate=0.05, rate=50, burst=50)
    use(monkeypatch, beat_interval=0.5, slice_size=10)
    embedded_worker(app, concurrency=1)
    run_the_day(redis)
    stored = pipeline.summaries(redis, DAY)
    wrong = [s for s in answer_key.station_ids(30)
             if not answer_key.same_summary(stored.get(s, {}), answer_key.expected_summary(s, DAY, api.config.seed, 0.05))]
    figures = outcome(api, redis, 30)
    print(f"\n[ch01 clean] {figures['done']}/30 stations equal the answer key, "
          f"{figures['duplicates']} duplicates, {figures['429s']} 429s")
    assert wrong == [] and len(stored) == 30
    assert (figures["duplicates"], figures["429s"]) == (0, 0)
    assert api.stats()["faults"]["glitch"] > 0     # the summaries really dropped some glitches


# --------------------------------------------------------------------------- the failure modes


@pytest.mark.exercises("1.1", "1.2", "1.3")   # a whole day: the chapter's, not one exercise's
def test_overlap_a_run_that_outlasts_the_interval_fetches_stations_twice(
        fake_api, worker_processes, beat_process, redis, monkeypatch):
    """Real processes: one worker with two pool processes, one beat. Each request takes 0.12 s, so a
    slice of 20 takes 2.4 s while beat sends a run every 0.5 s; the next run reads the same cursor."""
    # One run alone cannot pass the limit: it waits 0.12 s per request, longer than the 0.11 s the
    # bucket takes to earn a token. Two runs at once ask for up to 16 a second: every 429 here
    # comes from overlapping runs.
    api = fake_api(stations=40, slow_rate=1.0, slow_seconds=0.12, rate=9, burst=2)
    use(monkeypatch, beat_interval=0.5, slice_size=20)
    worker_processes("ch01_periodic.app", 1, pool="prefork", concurrency=2)
    beat_process("ch01_periodic.app", max_interval=1)
    runs.wait(redis, DAY, 90) or pytest.fail(f"the schedule did not go round; runs: {runs.log(redis, DAY)}")
    log = runs.log(redis, DAY)
    figures = outcome(api, redis, 40)
    twice = measure.fetched_more_than_once(api.stats())
    print(f"\n[ch01 overlap] up to {runs.most_at_once(log)} runs at once: {len(twice)} stations fetched "
          f"more than once, {figures['duplicates']} duplicate fetches, {figures['429s']} 429s, "
          f"{figures['missing']} stations missing")
    assert runs.most_at_once(log) >= 2
    assert figures["duplicates"] > 0 and twice
    assert figures["429s"] > 0
    for run in log:   # every run that a 429 ended was sharing the API with another run
        if run.error and "429" in run.error:
            assert any(other is not run and other.started < run.finished and run.started < other.finished
                       for other in log), run


@pytest.mark.exercises("1.1", "1.2", "1.3")   # a whole day: the chapter's, not one exercise's
def test_idle_gaps_runs_shorter_than_the_interval_leave_the_rate_budget_unused(
        fake_api, embedded_worker, redis, monkeypatch):
    """A slice of 5 takes a few milliseconds; then the API sits idle until the next beat, 1.5 s later."""
    api = fake_api(stations=20, rate=20, burst=20)
    use(monkeypatch, beat_interval=1.5, slice_size=5)
    embedded_worker(app, concurrency=1)   # one slot: a slow run on a loaded machine cannot overlap the next
    run_the_day(redis)
    figures = outcome(api, redis, 20)
    ideal = figures["accepted"] / 20
    print(f"\n[ch01 idle gaps] utilisation {figures['utilisation']:.0%}: {figures['accepted']} requests in "
          f"{figures['seconds']:.1f} s, where the API allows 20/s ({ideal:.1f} s of work)")
    assert figures["missing"] == 0 and figures["duplicates"] == 0
    assert figures["utilisation"] < 0.5


@pytest.mark.exercises("1.1", "1.2", "1.3")   # a whole day: the chapter's, not one exercise's
def test_lost_data_an_api_error_mid_slice_leaves_the_rest_of_the_slice_never_done(
        fake_api, embedded_worker, redis, monkeypatch):
    """One worker slot, runs far shorter than the interval: no overlap, so every request is a first
    attempt and the fault profile says exactly which stations must be lost."""
    api = fake_api(stations=40, error_rate=0.05, rate=50, burst=50)
    use(monkeypatch, beat_interval=0.5, slice_size=10)
    embedded_worker(app, concurrency=1, loglevel="CRITICAL")
    run_the_day(redis)
    figures = outcome(api, redis, 40)
    errors = api.stats()["faults"]["error"]
    print(f"\n[ch01 lost data] {errors} API error(s) in {figures['requests']} requests left "
          f"{figures['missing']} of 40 stations never done ({figures['missing'] / 40:.0%})")
    predicted = expected_losses(api.config, answer_key.station_ids(40), slice_size=10)
    assert figures["missing"] > 0 and figures["wrong"] == 0
    assert measure.check(pipeline.summaries(redis, DAY), answer_key.station_ids(40), DAY, api.config.seed)["missing"] \
        == predicted


def expected_losses(config: ApiConfig, ids: list[str], slice_size: int) -> list[str]:
    """From the seeded fault profile: in each slice, the first station whose call fails, and all after it."""
    lost = []
    for first in range(0, len(ids), slice_size):
        piece = ids[first:first + slice_size]
        for i, station in enumerate(piece):
            if draw_fault(config, ((station,), DAY), 0)[0] != "ok":
                lost.extend(piece[i:])
                break
    return lost


# --------------------------------------------------------------------------- the demo


@pytest.mark.exercises("1.1", "1.2", "1.3")   # a whole day: the chapter's, not one exercise's
def test_the_demo_runs_the_day_and_accounts_for_every_station(fake_api, embedded_worker, redis, monkeypatch):
    from ch01_periodic import demo

    fake_api(stations=100, rate=50, burst=50)
    use(monkeypatch, demo_stations=20, beat_interval=0.5, slice_size=10)
    embedded_worker(demo.app, concurrency=2)
    counts = demo.run(redis, settings_mod.load(), show=False)
    assert counts["stations"] == 20
    assert counts["done"] + counts["missing"] + counts["wrong"] == 20 and counts["done"] == 20
