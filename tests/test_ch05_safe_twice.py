"""Safe twice, and a run's life without races: chapters 3-5's writes when Redis stalls or a reply is lost.

redis-py sends a command again when its reply does not come in time (a stalled Redis, a
dropped connection): the command then runs twice. Each test here makes that happen for
real, with a Redis of its own stalled by `DEBUG SLEEP` longer than the client's socket
timeout while the write is in flight, and checks the state is the one a single run leaves:
a refund given back once, a loop's end that ends (not "lost"), a turn taken (not refused),
a lease of exactly the stations it returned. Then a run's life: only a kick opens a run, the
watchdog never opens one after a "budget spent" end, the loop's end closes the run in the
same script, and discovering again mid-day leaves leases and dead letters alone.
"""
from __future__ import annotations

import threading
import time

import pytest
import redis as redis_py

from workshop import celery_app, stations as answer_key
from workshop.own_redis import OwnRedis

from ch02_segmented import stages
from ch03_signals import lock, watchdog as ch03_watchdog
from ch04_rate_limits import dead_letters, leases, retries
from ch04_rate_limits.keys import for_day
from ch05_reporting import budget, keys, runs, signals
from ch05_reporting import pipeline

STALL = 1.0          # seconds Redis sleeps: beyond the client's socket timeout below, so the command is sent again
SOCKET_TIMEOUT = 0.3
DAY = "2026-06-01"


class Stalling:
    """A redis-server of the test's own whose every client command can be caught in a stall."""

    def __init__(self, url: str, port: int):
        self.url, self.port = url, port
        self.client = redis_py.Redis(port=port, decode_responses=True)

    def during(self, action, warm_up):
        """Run `action()` while Redis sleeps STALL seconds: its command waits, times out, is sent again.

        `warm_up()` first runs the same kind of call elsewhere, so its script is loaded: a script Redis does
        not know yet answers NOSCRIPT (runs nothing) and is loaded afterwards, outside the stall."""
        warm_up()
        sleeper = threading.Thread(target=lambda: redis_py.Redis(port=self.port, socket_timeout=STALL + 5)
                                   .execute_command("DEBUG", "SLEEP", STALL))
        sleeper.start()
        time.sleep(0.1)   # the sleep has begun: what `action` sends now waits behind it
        try:
            return action()
        finally:
            sleeper.join()


@pytest.fixture
def stalling(tmp_path, monkeypatch):
    own = OwnRedis(tmp_path, options=("--enable-debug-command", "yes"))
    own.start()
    monkeypatch.setenv("REDIS_URL", own.url)
    monkeypatch.setattr(celery_app, "SOCKET_TIMEOUT", SOCKET_TIMEOUT)
    celery_app._client.cache_clear()
    yield Stalling(own.url, own.port)
    celery_app._client.cache_clear()
    own.stop_all()


def ids(n: int) -> list[str]:
    return [f"WX{i:05d}" for i in range(1, n + 1)]


# ---------------------------------------------------------------- a write caught in a stall runs twice


@pytest.mark.exercises("5.2")
def test_a_refund_sent_twice_in_a_stall_is_given_back_once(stalling):
    r = celery_app.redis_client()
    run = runs.open(r, DAY, budget_micro=1_000_000)
    call = budget.new_call()
    assert budget.reserve(r, run, 400_000, call)
    def warm_up():
        other = runs.open(r, "2026-06-02", budget_micro=None)
        budget.reserve(r, other, 1, "warm")
        budget.settle(r, other, "warm", ids(1), 200, 1, 0.1)
    settled = stalling.during(lambda: budget.settle(r, run, call, ids(5), 503, 0, 0.2), warm_up)
    state = budget.state(r, run)
    print(f"settled {settled}; {state}; counters {runs.record(r, run)['counters']}")
    assert settled is True, "the settlement's first answer, not the repeat's"
    assert state["spent"] == 0, "the 400,000 reserved came back once (twice would be -400,000)"
    assert runs.record(r, run)["counters"]["requests"] == 1, "the call is counted once"
    assert budget.reserve(r, run, 1_000_000) and not budget.reserve(r, run, 1), "the budget holds to the micro"


@pytest.mark.exercises("3.5")
def test_a_lock_taken_in_a_stall_is_said_taken_by_its_repeat(stalling):
    # Found by a fresh-clone CI run of `make test-faults`: the watchdog's start lost the reply to its SET NX,
    # the repeat answered "not set", and the watchdog said "running" of a loop nobody ran.
    r = celery_app.redis_client()
    key = "ch03:{2026-06-01}:lock"
    took = stalling.during(lambda: lock.acquire(r, key, "owner", 60_000),
                           lambda: lock.acquire(r, "elsewhere:lock", "x", 1000))
    print(f"acquire said {took}; the lock holds {r.get(key)!r}")
    assert r.get(key) == "owner", "the first send took the lock"
    assert took is True, "the lock is ours: its repeat must not say another loop holds it"
    assert not lock.acquire(r, key, "another", 60_000), "a second start: not its"


@pytest.mark.exercises("3.4")
def test_a_turn_sent_twice_in_a_stall_is_taken_once_and_said_taken(stalling):
    r = celery_app.redis_client()
    key, turns = "ch03:{2026-06-01}:lock", "ch03:{2026-06-01}:turns"
    assert lock.acquire(r, key, "owner", 60_000)
    taken = stalling.during(lambda: lock.refresh(r, key, turns, "owner", "0", 0, "task-1", 60_000),
                            lambda: lock.refresh(r, "elsewhere:lock", "elsewhere:turns", "x", "0", 0, "t", 1000))
    print(f"refresh said {taken}; turns {r.hgetall(turns)}")
    assert taken is True, "the turn was ours: a repeat must not say 'lost' and stop the chain"
    assert r.hgetall(turns) == {"0": "1", "0:task": "task-1"}, "one turn taken"
    assert not lock.refresh(r, key, turns, "owner", "0", 0, "task-1-again", 60_000), "a second message: lost"


@pytest.mark.exercises("5.1")
def test_a_loops_end_sent_twice_in_a_stall_ends_it_and_closes_its_run_once(stalling):
    r = celery_app.redis_client()
    loop, k = pipeline.LOOP, pipeline.LOOP.keys(DAY)
    owner = "owner-of-the-day"
    assert lock.acquire(r, k.lock, owner, 60_000)
    run = runs.open(r, DAY, budget_micro=None)
    sent = []
    signals.run_finished.connect(lambda sender, **kw: sent.append(kw), weak=False, dispatch_uid="t-end")
    try:
        ended = stalling.during(lambda: loop.end(r, k, owner, "finish"),
                                lambda: loop.end(r, loop.keys("2026-06-02"), "not-the-owner", "finish"))
    finally:
        signals.run_finished.disconnect(dispatch_uid="t-end")
    print(f"end said {ended!r}; run {r.hgetall(keys.RunKeys(run).record)}; signals {sent}")
    assert ended == "finished", "the loop ended: a repeat must not say 'lost' and leave the run open"
    assert not r.exists(k.lock) and r.exists(k.finished)
    assert runs.current(r, DAY) is None and runs.unreported_runs(r) == [run], "closed once, waiting for its report"
    assert r.hget(keys.RunKeys(run).record, "outcome") == "finished"
    assert [s["run"] for s in sent] == [run], "run_finished sent once"


@pytest.mark.exercises("4.4")
def test_a_lease_sent_twice_in_a_stall_holds_exactly_the_stations_it_returned(stalling):
    r, k = celery_app.redis_client(), for_day(DAY)
    stages.add(r, k.pending, ids(9))
    taken = stalling.during(lambda: leases.lease(r, k, 3, 30, "task-a:0"),
                            lambda: leases.lease(r, for_day("2026-06-02"), 3, 30, "warm:0"))
    held = sorted(station for station, holder in r.hgetall(k.holders).items() if holder == "task-a:0")
    print(f"lease returned {taken}; held by the token {held}; pending {stages.members(r, k.pending)}")
    assert taken == ids(3) and held == ids(3), "no stations leased that the caller does not know of"
    assert stages.members(r, k.pending) == ids(9)[3:]
    assert leases.lease(r, k, 3, 30, "task-b:0") == ids(9)[3:6], "the next lease takes the next three"


# ---------------------------------------------------------------- a run's life


@pytest.mark.exercises("5.1", "5.2")
def test_the_watchdog_after_a_budget_spent_end_opens_no_run_and_sends_nothing(redis):
    loop, k = pipeline.LOOP, pipeline.LOOP.keys(DAY)
    run = runs.open(redis, DAY, budget_micro=0)
    assert not budget.reserve(redis, run, 2000), "nothing fits: the budget is spent"
    stages.add(redis, for_day(DAY).stations, ids(10))
    stages.add(redis, for_day(DAY).pending, ids(10))
    assert lock.acquire(redis, k.lock, "owner", 60_000)
    assert loop.end(redis, k, "owner", "finish") == "finished"
    assert redis.hget(keys.RunKeys(run).record, "outcome") == "budget spent"
    redis.sadd(loop.watched, DAY)   # a watchdog round that listed the day a moment before the end

    seen = ch03_watchdog.check(redis, loop)
    print(f"watchdog: {seen}; sequence {redis.get(keys.sequence(DAY))}")
    assert seen[DAY] != "restarted"
    assert runs.current(redis, DAY) is None and redis.get(keys.sequence(DAY)) == "1", "no new run"
    assert not redis.exists(k.lock), "no loop started, so no call"
    assert redis.zcard(for_day(DAY).pending) == 10, "the stations wait for the next kick"


@pytest.mark.exercises("5.1")
def test_the_end_closes_the_run_in_its_own_script_so_a_kick_right_after_opens_a_new_one(redis, monkeypatch):
    loop, k = pipeline.LOOP, pipeline.LOOP.keys(DAY)
    assert lock.acquire(redis, k.lock, "first", 60_000)
    first = runs.open(redis, DAY, budget_micro=None)
    loop.end(redis, k, "second-owner-warms-the-script", "finish")   # "lost": not ours, makes the script
    script = loop._end
    after = {}

    def end_then_kick(r, keys=(), args=()):
        answer = script(r, keys, args)
        # A kick lands the moment the end's script returned, before anything else of `end` runs.
        after["open"] = runs.current(r, DAY)
        with monkeypatch.context() as m:
            m.setattr(loop, "advance", lambda *a, **kw: "fetch")   # no worker here: the kick's first batch unsent
            after["owner"] = loop.kick(r, DAY, budget=None)
        after["run"] = runs.current(r, DAY)
        return answer

    monkeypatch.setattr(loop, "_end", end_then_kick)
    assert loop.end(redis, k, "first", "finish") == "finished"
    print(after)
    assert after["open"] is None, "the end closed its run in the same script: no moment where it is still open"
    assert after["owner"] and after["run"] not in (None, first), "the kick opened a run of its own"
    assert runs.unreported_runs(redis) == [first], "the first run waits for its report"


def test_discovering_again_mid_day_leaves_leases_dead_letters_and_done_stations_alone(redis, fake_api):
    api = fake_api(stations=12)
    day, k = DAY, for_day(DAY)
    pipeline.ch03_pipeline.discover(day)
    flying = leases.lease(redis, k, 4, 30, "in-flight:0")
    gone = leases.lease(redis, k, 2, 30, "given-up:0")
    dead_letters.bury(redis, k, gone, retries.Failure("5xx", "HTTP 503", True), 3, "given-up:0")
    listed = answer_key.station_ids(12)
    stages.move(redis, k.pending, k.fetched, listed[6:8])
    before = {name: stages.members(redis, getattr(k, name)) for name in ("pending", "in_flight", "fetched")}

    pipeline.ch03_pipeline.discover(day)
    after = {name: stages.members(redis, getattr(k, name)) for name in ("pending", "in_flight", "fetched")}
    print(f"in flight {flying}, dead {gone}: {after}")
    assert after == before and after["pending"] == listed[8:], "only new stations are queued"
    assert sorted(dead_letters.dead_letters(redis, k)) == gone, "dead letters stay dead letters"
    assert api.stats()["fetches"] == {}, "nothing fetched"
