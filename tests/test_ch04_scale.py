"""Chapter 4's loop at scale: what one turn costs Redis, counted, and the same on the first and the last turn.

Counted, not timed (ch04_rate_limits/turn_cost.py): the round trips the pool process
sends to Redis per turn (a command, a pipeline or a script: one each; the publish of
the next message goes to the broker, as a raw task's does), the receipt's round trip
in the worker's main process, and every command Redis runs (INFO commandstats: those
inside scripts too), on a redis-server of this test's own. The messages run in this
process, one after the other, so every turn of the day is seen and none is lost to timing.

The design's figures, per fetch turn (a helper's or the lead's while pending has work):

- round trips from the pool process: at most 4 (ROUND_TRIPS): the start of the
  attempt and the limiter (one pipeline), the settle and the circuit (one pipeline),
  the handler's one script (turn.py: the stop switch, the turn, the next lease), the
  history's entry; and 1 in the main process, the receipt (RECEIPT). Before (counted
  here on 2026-12-06): 8 to 9 (median 9): the start, the limiter, the settle, the
  circuit, the stop switch, the turn, the lease, the history, and the lead's
  chapter 3 turn (next_step's reads) on its fetch turns.
- commands inside Redis (the receipt's included): at most 60 at batch 1 and 110 at
  batch 50 (COMMANDS); counted 58 and 107. The scripts that touch every station of a
  batch (the receipt, the start, the lease, the settle) send one command per key for
  the whole batch (HMGET, ZADD, ZREM, HDEL, ZMSCORE of many), so only the settle's
  SET of each station's readings grows with the batch, never with the day. Before
  (one command per station per key, counted here on 2026-12-06): 56 and 1,085.

    pytest tests/test_ch04_scale.py -s      # prints the figures
"""
from __future__ import annotations


import pytest

from workshop import settings as settings_mod, stations as answer_key
from workshop.celery_app import redis_client
from workshop.own_redis import OwnRedis

from ch02_segmented import pipeline as segment_pipeline
from ch04_rate_limits import pipeline, turn_cost

from test_ch04_rate_limits import EXERCISES

pytestmark = pytest.mark.exercises(*EXERCISES)   # a whole day, in process

ROUND_TRIPS = 4                    # per fetch turn, from the pool process (the receipt's apart: RECEIPT)
RECEIPT = 1
COMMANDS = {1: 60, 50: 110}         # per fetch turn, inside Redis, at batch 1 and 50


@pytest.fixture
def own_redis(tmp_path, monkeypatch, redis_server):
    """A redis-server of this test's own, the lesson code's client on it; chapter 4's app stays bound to the
    session's (its REDIS_URL is read once, at its first use: bind it first, or it would outlive this server)."""
    own = OwnRedis(tmp_path)
    own.start()
    try:
        assert pipeline.app.conf.broker_url == redis_server.url
        monkeypatch.setenv("REDIS_URL", own.url)
        monkeypatch.setenv("CH04_WINDOW", "2")
        yield redis_client()
    finally:
        own.stop_all()


def day_of(own_redis, fake_api, monkeypatch, tmp_path, stations: int, batch: int):
    """A counted day: the cost of each turn, per task; the day equal to the answer key."""
    # Fast and faultless: this test counts Redis's work, the API must not be what it waits for.
    fake_api(stations=stations, rate=100_000, burst=1_000, max_batch=batch, error_rate=0.0, slow_rate=0.0,
             malformed_rate=0.0)
    for name, value in {"API_MAX_BATCH": batch, "API_RATE": 100_000, "API_BURST": 1_000}.items():
        monkeypatch.setenv(name, str(value))
    day = settings_mod.load().day.isoformat()
    db = str(tmp_path / f"summaries-{batch}.sqlite3")
    cost = turn_cost.count_day(own_redis, day, answer_key.station_ids(stations), db)
    outcome = segment_pipeline.outcome(own_redis, day, db)
    assert outcome["done"] == stations and outcome["wrong"] == outcome["missing"] == 0, outcome
    assert pipeline.LOOP.finished(own_redis, day)
    return cost


def flat(turns: list, what: str) -> None:
    """The first tenth of the turns costs what the last tenth does (the very first and last left out:
    the first lease, a shorter last batch)."""
    tenth = max(1, len(turns) // 10)
    first, last = turn_cost.median(turns[1:tenth + 1]), turn_cost.median(turns[-tenth - 1:-1])
    print(f"  {what:<16}{len(turns):>6} turns  first tenth {first}  last tenth {last}")
    assert first.round_trips == last.round_trips, f"{what}: round trips per turn {first} -> {last}"
    assert abs(first.commands - last.commands) <= 0.02 * first.commands + 2, f"{what}: commands {first} -> {last}"


@pytest.mark.parametrize("batch, stations", [(1, 400), (50, 20_000)])
def test_a_fetch_turn_costs_at_most_the_stated_round_trips_and_commands_flat_over_the_day(
        own_redis, fake_api, monkeypatch, tmp_path, batch, stations):
    cost = day_of(own_redis, fake_api, monkeypatch, tmp_path, stations, batch)
    print(f"\n{stations} stations, batches of {batch}: per turn, median")
    assert len(cost["fetch_batch"]) == stations // batch
    for segment in ("fetch_batch", "transform_batch", "persist_batch"):
        if len(cost[segment]) >= 50:   # transform and persist take bigger batches: few turns on a small day
            flat(cost[segment], segment)
    fetch = turn_cost.median(cost["fetch_batch"])
    assert fetch.round_trips <= ROUND_TRIPS, f"a fetch turn sends {fetch.round_trips} round trips to Redis"
    assert fetch.receipt <= RECEIPT, f"a fetch turn's receipt sends {fetch.receipt} round trips"
    assert fetch.commands <= COMMANDS[batch], f"a fetch turn runs {fetch.commands} commands in Redis"
