"""Chapter 1: the monolith on a timer works on a clean day, and each of its failure modes is real.

The failure-mode tests characterise defects that later chapters fix: each runs
the pipeline for real (celery beat + worker(s) + the fake API), measures the
defect, prints the figure (`pytest -s` shows them) and asserts it is there.
"""
from __future__ import annotations

import time

import pytest
import requests

from workshop import settings as settings_mod, stations as answer_key
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


def test_taking_a_slice_reads_the_cursor_and_stops_at_the_end_of_the_day(redis):
    pipeline.plan_day(redis, DAY, answer_key.station_ids(25))
    assert pipeline.take_slice(redis, DAY, 10) == (0, answer_key.station_ids(10))
    # Taking does not move the cursor: a second run that starts now takes the same slice.
    assert pipeline.take_slice(redis, DAY, 10) == (0, answer_key.station_ids(10))
    redis.set(key(DAY, "cursor"), 20)
    assert pipeline.take_slice(redis, DAY, 10) == (20, answer_key.station_ids(5, start=20))
    redis.set(key(DAY, "cursor"), 25)
    assert pipeline.take_slice(redis, DAY, 10) == (25, [])   # past the end: nothing wraps around


def test_utilisation_is_accepted_requests_per_second_over_the_allowed_rate():
    stats = {"accepted": 30, "first_request_at": 100.0, "last_request_at": 110.0, "config": {"rate": 6.0}}
    assert measure.utilisation(stats) == pytest.approx(0.5)             # 3/s of 6/s over 10 s
    assert measure.utilisation(stats, seconds=20) == pytest.approx(0.25)
    assert measure.utilisation({**stats, "last_request_at": 100.0}) == 0.0


def test_hard_to_test_no_step_runs_without_a_live_api(redis, monkeypatch):
    """To check the summary or the store, you must run the whole task against a real API."""
    pipeline.plan_day(redis, DAY, answer_key.station_ids(10))      # even with discovery done for it
    monkeypatch.setenv("API_URL", "http://127.0.0.1:9")            # nothing listens there
    with pytest.raises(requests.ConnectionError):
        pipeline.run_slice()                                        # the task's body, called in-process
    assert redis.hlen(key(DAY, "summaries")) == 0                   # nothing summarised, nothing stored
    assert redis.get(key(DAY, "cursor")) == "10"                    # and the slice is gone for the day


# --------------------------------------------------------------------------- a clean day


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


def test_the_demo_runs_the_day_and_accounts_for_every_station(fake_api, embedded_worker, redis, monkeypatch):
    from ch01_periodic import demo

    fake_api(stations=100, rate=50, burst=50)
    use(monkeypatch, demo_stations=20, beat_interval=0.5, slice_size=10)
    embedded_worker(demo.app, concurrency=2)
    counts = demo.run(redis, settings_mod.load(), show=False)
    assert counts["stations"] == 20
    assert counts["done"] + counts["missing"] + counts["wrong"] == 20 and counts["done"] == 20
