"""Chapter 3: a pipeline that triggers itself with Celery signals, one loop per pipeline.

Real workers (in-thread, and real prefork processes), the fake API, the session's
Redis. Each test drives a whole day through chapter 2's segments with the loop and
checks what happened from the outside: the API's own counts, the SQLite rows
against the answer key, and the history the signals wrote.
"""
from __future__ import annotations

import datetime as dt
import gc
import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery.signals import task_failure, task_prerun, task_success

from workshop import settings as settings_mod, stations as answer_key
from workshop.workers import EmbeddedBeat

from ch02_segmented import database, keys as segment_keys, stages
from ch03_signals import error_log, history, lock, pipeline, tasks, watchdog
from ch03_signals.app import WATCHDOG, app, beat_schedule
from ch03_signals.loop import Loop
from ch03_signals.messages import Turn
from workshop.lua import Script
from ch03_signals.pipeline import LOOP

N = 40          # stations per test: small, so the module stays quick on a busy machine
TIMEOUT = 60.0  # seconds a loop may take before a test gives up

# What a whole day needs: the handlers connected, one turn, the lock's turn, the start.
loop_exercises = pytest.mark.exercises("3.1", "3.3", "3.4", "3.5")


@pytest.fixture
def worker(embedded_worker):
    return embedded_worker(app, pool="threads", concurrency=2)


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A fresh SQLite file; CH02_DB points every persist task at it (worker processes included)."""
    path = tmp_path / "summaries.sqlite3"
    monkeypatch.setenv("CH02_DB", str(path))
    return str(path)


@pytest.fixture
def k(settings):
    return segment_keys.for_day(settings.day)


def use(monkeypatch, **settings) -> None:
    """Set settings (BATCH_SIZE=..., CH03_LOCK_TTL=...) for this test, workers included."""
    for name, value in settings.items():
        monkeypatch.setenv(name.upper(), str(value))


def batch_size() -> int:
    s = settings_mod.load()
    return min(s.batch_size, s.api_max_batch)


def finish(r, k, timeout: float = TIMEOUT) -> None:
    """Wait for the loop to run out of work, and for the history to hold its last batch."""
    assert LOOP.wait(r, k.day, timeout), f"the loop did not finish in {timeout:.0f} s: {LOOP.status(r, k.day)}"
    history.iterations(r, k.day)


def on_prerun(task, receiver):
    """Connect `receiver` to task_prerun of `task` for this test (the embedded worker runs in this process)."""
    task_prerun.connect(receiver, sender=task, weak=False)
    return receiver


def iterations(r, k, task: str | None = None) -> list[dict]:
    """The history of the day's batch tasks (of `task`, if given), in the order they started."""
    rows = sorted(history.entries(r, k.day), key=lambda e: e["started"])
    return [e for e in rows if task is None or e["task"] == task]


def assert_one_chain(rows: list[dict]) -> None:
    """Each batch was sent by the handler of the one before it: one loop, never two at once."""
    for before, after in zip(rows, rows[1:]):
        assert after["parent_id"] == before["task_id"], f"{after['task']} {after['first']} was not sent by " \
                                                        f"the batch before it ({before['task']} {before['first']})"


def assert_complete_and_correct(r, k, db, api, ids) -> None:
    rows = database.rows(db, k.day)
    expected = [answer_key.expected_summary(s, k.day, api.config.seed, api.config.glitch_rate) for s in sorted(ids)]
    assert [row["station"] for row in rows] == sorted(ids), "one row per station, once"
    wrong = [row["station"] for row, e in zip(rows, expected) if not answer_key.same_summary(row, e)]
    assert not wrong, f"rows that differ from the answer key: {wrong}"
    assert set(stages.members(r, k.persisted)) == set(ids)
    assert not r.exists(k.pending, k.fetched, k.transformed), "nothing left in any segment"


# ---------------------------------------------------------------- the handlers, in this process


@pytest.fixture
def fresh_signals(monkeypatch):
    """Connections made in the test are undone after it (the receivers lists are restored)."""
    for signal in (task_success, task_failure):
        monkeypatch.setattr(signal, "receivers", list(signal.receivers))
        monkeypatch.setattr(signal, "sender_receivers_cache", {})


class RecordingLoop(Loop):
    """A loop whose handlers only record which task ended how."""

    def __init__(self, calls: list):
        super().__init__("ch03-connect-test", pipeline.segments(tasks.fetch_batch, tasks.transform_batch,
                                                                tasks.persist_batch))
        self.calls = calls

    def on_success(self, sender, **_):
        self.calls.append(("success", sender.name))

    def on_failure(self, sender, **_):
        self.calls.append(("failure", sender.name))


@pytest.mark.exercise("3.1")
def test_connect_hangs_the_loops_handlers_on_its_own_tasks_only_once_and_they_stay(redis, fresh_signals):
    ours = [task._get_current_object() for task in tasks.BATCH_TASKS]   # the app is finalized, as in a worker
    other = app.tasks[WATCHDOG]       # a task of the same app that is not a segment's
    calls: list = []
    loop = RecordingLoop(calls)
    loop.connect()
    loop.connect()                    # imported twice (a worker, then a test): still one call per task end
    del loop
    gc.collect()                      # nothing else holds the loop: the signals must (weak=False)
    for task in [*ours, other]:
        task_success.send(sender=task, result=None)
        task_failure.send(sender=task, task_id="t", exception=RuntimeError("x"), args=([], "day"), kwargs={},
                          traceback=None, einfo=None)
    expected = [(how, task.name) for task in ours for how in ("success", "failure")]
    assert calls == expected, ("each segment's task, once per end, and no other task "
                               f"(sender= the task object): {calls}")


@pytest.mark.exercise("3.2")
def test_the_error_log_handler_writes_one_entry_per_failure_with_what_entries_reads_back(
        redis, fresh_signals):
    stream, day = "ch03-test:errors", "2026-01-15"
    error_log.connect(*tasks.BATCH_TASKS, stream=stream)
    fetch = tasks.fetch_batch._get_current_object()
    before = time.time()
    task_failure.send(sender=fetch, task_id="t-1", exception=ValueError("no " * 300), args=(["s1", "s2"], day),
                      kwargs={}, traceback=None, einfo=None)                    # what a worker sends
    task_success.send(sender=fetch, result=None)                               # a success logs nothing
    [entry] = error_log.entries(redis, day, stream=stream)
    assert (entry["task"], entry["task_id"], entry["day"], entry["batch"]) == ("fetch_batch", "t-1", day,
                                                                               ["s1", "s2"])
    assert entry["exception"].startswith("ValueError: no no") and len(entry["exception"]) <= 500
    assert before <= entry["at"] <= time.time()
    assert error_log.entries(redis, "2026-01-16", stream=stream) == [], "entries of another day are not this one's"


# ---------------------------------------------------------------- the lock and one turn, no worker


@pytest.mark.exercise("3.4")
def test_the_lock_is_refreshed_and_released_only_by_its_owner(redis):
    key, turns = "ch03-test:lock", "ch03-test:turns"
    assert lock.acquire(redis, key, "A", 10_000)
    assert not lock.acquire(redis, key, "B", 10_000), "a held lock cannot be taken"

    # B is not the owner: its refresh and release change nothing (value and TTL stay A's).
    assert lock.refresh(redis, key, turns, "B", "0", 0, "task-1", 60_000) is False
    assert lock.release(redis, key, "B") is False
    assert lock.owner(redis, key) == "A" and 0 < redis.pttl(key) <= 10_000, "B touched A's lock"
    assert not redis.exists(turns), "B took no turn"

    assert lock.refresh(redis, key, turns, "A", "0", 0, "task-1", 60_000) is True
    assert lock.owner(redis, key) == "A" and redis.pttl(key) > 10_000, "A's refresh extends its TTL"
    assert redis.hgetall(turns) == {"0": "1", "0:task": "task-1"}, "chain 0 moved to turn 1, task-1's"

    assert lock.release(redis, key, "A") is True and not redis.exists(key)
    assert lock.refresh(redis, key, turns, "A", "0", 1, "task-2", 60_000) is False and not redis.exists(key), \
        "no lock to refresh"
    assert lock.acquire(redis, key, "B", 10_000) and lock.owner(redis, key) == "B"


@pytest.mark.exercise("3.4")
def test_a_turn_is_taken_once_so_a_message_that_runs_twice_starts_no_second_chain(redis):
    key, turns = "ch03-test:lock", "ch03-test:turns"
    assert lock.acquire(redis, key, "A", 10_000)
    assert lock.refresh(redis, key, turns, "A", "0", 0, "t1", 10_000)
    assert lock.refresh(redis, key, turns, "A", "0", 1, "t2", 10_000), "the message of turn 1 takes its turn"
    assert_a_repeat_answers_the_same(redis, key, turns)
    assert not lock.refresh(redis, key, turns, "A", "0", 1, "t2-again", 10_000), \
        "the same message run again (redelivered after its success) is stale"
    assert lock.refresh(redis, key, turns, "A", "1", 0, "h1", 10_000), "another chain has turns of its own"
    assert lock.chain_of(redis, turns, "t2") == ("0", 2) and lock.chain_of(redis, turns, "h1") == ("1", 1)
    assert lock.chain_of(redis, turns, "t1") is None, "only a chain's latest turn is known"
    # Never shortened: a retry's countdown may hold the lock longer than a turn's TTL.
    assert lock.hold(redis, key, "A", 60_000) and redis.pttl(key) > 50_000
    assert lock.refresh(redis, key, turns, "A", "0", 2, "t3", 10_000) and redis.pttl(key) > 50_000
    assert not lock.hold(redis, key, "B", 90_000) and redis.pttl(key) <= 60_000


def assert_a_repeat_answers_the_same(r, key: str, turns: str) -> None:
    """The call that just took turn 1 of chain "0" as task t2, sent again (redis-py lost its reply)."""
    before = r.hgetall(turns)
    again = lock.refresh(r, key, turns, "A", "0", 1, "t2", 10_000)
    assert again is True, ("the same refresh sent twice (its reply lost, redis-py re-sends it) answered "
                           f"{again} the second time: a repeat of the call that took the turn (same chain, turn "
                           "and task id, the chain now one further) must answer 1 again")
    assert r.hgetall(turns) == before, f"the repeat moved the chain again: {before} became {r.hgetall(turns)}"


WITHOUT_REPEAT = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local at = tonumber(redis.call('hget', KEYS[2], ARGV[2]) or '0')
if at ~= tonumber(ARGV[3]) then return 0 end
redis.call('hset', KEYS[2], ARGV[2], at + 1, ARGV[2] .. ':task', ARGV[4])
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[5]) then redis.call('pexpire', KEYS[1], ARGV[5]) end
return 1
"""


@pytest.mark.wrong_attempt("3.4")
def test_a_refresh_that_forgets_its_own_repeat_fails_3_4_saying_so(redis, monkeypatch):
    """A plausible 3.4: the lock and the turn checked, but a repeat of the same call answers 0."""
    monkeypatch.setattr(lock, "_REFRESH", Script(WITHOUT_REPEAT))
    key, turns = "ch03-test:lock", "ch03-test:turns"
    assert lock.acquire(redis, key, "A", 10_000)
    assert lock.refresh(redis, key, turns, "A", "0", 0, "t1", 10_000)
    assert lock.refresh(redis, key, turns, "A", "0", 1, "t2", 10_000)
    with pytest.raises(AssertionError) as failed:
        assert_a_repeat_answers_the_same(redis, key, turns)
    assert "sent twice" in str(failed.value) and "answered False the second time" in str(failed.value)


# ---------------------------------------------------------------- one exercise at a time
# Each exercise's own verdict, in a second or two, with the exercises it does not check replaced by test
# doubles: the batch is not sent (send/advance/start record what they were asked), and lock.refresh is a
# plain-Python stand-in. The whole-loop tests below check the same promises with everything real.


def refresh_double(calls: list):
    """lock.refresh as plain Python (not atomic, fine in one thread), recording each call's arguments."""
    def refresh(r, key, turns, owner, chain, turn, task_id, ttl_ms):
        calls.append((owner, chain, turn, task_id))
        if r.get(key) != owner or int(r.hget(turns, chain) or 0) != turn:
            return False
        r.hset(turns, mapping={chain: turn + 1, f"{chain}:task": task_id})
        r.pexpire(key, max(ttl_ms, r.pttl(key)))
        return True
    return refresh


def judge_advance(r, k, monkeypatch) -> None:
    """Exercise 3.3's promises, turn by turn, each failure one sentence."""
    refreshed, sent = [], []
    monkeypatch.setattr(lock, "refresh", refresh_double(refreshed))
    monkeypatch.setattr(LOOP, "send", lambda step, day, owner, turn, countdown=0.0: sent.append((step, owner, turn)))
    lk = LOOP.keys(k.day)
    ids = answer_key.station_ids(12)
    stages.add(r, k.pending, ids)
    assert lock.acquire(r, lk.lock, "owner", 10_000)

    said = LOOP.advance(r, k.day, "stale")
    assert (said, sent) == ("lost", []), (f"advance by an owner whose lock is gone answered {said!r} and sent "
                                          f"{len(sent)} batch(es): take the turn with lock.refresh first, and "
                                          "when it says no, send nothing and answer 'lost'")
    assert refreshed, "advance never called lock.refresh: a message must take its turn before it acts"

    said = LOOP.advance(r, k.day, "owner")
    assert said == "fetch" and len(sent) == 1, (f"advance by the owner with {len(ids)} stations pending answered "
                                                f"{said!r} and sent {len(sent)} batch(es): one fetch batch expected")
    step, owner, turn = sent[0]
    assert step.batch == ids[:batch_size()], f"the batch sent: {ids[:batch_size()]} expected, got {step.batch}"
    assert (owner, turn.chain, turn.number) == ("owner", "0", 1), \
        f"the batch goes as the chain's next turn (chain '0', turn 1, by 'owner'), got {owner!r}, {turn}"
    assert refreshed[-1] == ("owner", "0", 0, turn.task_id), \
        f"lock.refresh takes turn 0 with the task id of the message it sends next: {refreshed[-1]}, sent {turn}"

    said = LOOP.advance(r, k.day, "owner")   # turn 0 again: the same message run twice
    assert (said, len(sent)) == ("lost", 1), (f"a message whose turn was taken already answered {said!r} and "
                                              f"sent {len(sent) - 1} more batch(es): 'lost', nothing sent")

    LOOP.stop(r, k.day)
    said = LOOP.advance(r, k.day, "owner", turn=turn)
    assert (said, len(sent)) == ("stopped", 1), (f"with the stop switch set advance answered {said!r} and sent "
                                                 f"{len(sent) - 1} more batch(es): end the loop as stopped")
    assert not r.exists(lk.lock), "a stopped loop lets go of its lock (self.end does it)"

    r.delete(lk.stop, lk.turns, k.pending)
    assert lock.acquire(r, lk.lock, "owner", 10_000)
    end = LOOP.end

    def kicked_while_ending(*args, **kwargs):
        """A kick lands just as the loop finds no work: it queued stations and set `kicked` first."""
        stages.add(r, k.pending, ids[:3])
        r.set(lk.kicked, 1)
        monkeypatch.setattr(LOOP, "end", end)
        return end(*args, **kwargs)

    monkeypatch.setattr(LOOP, "end", kicked_while_ending)
    said = LOOP.advance(r, k.day, "owner")
    assert said == "fetch" and [s.batch for s, *_ in sent[1:]] == [ids[:3]], \
        (f"a kick came while the loop was ending (end answered 'again') and queued {ids[:3]}; advance answered "
         f"{said!r} and sent {[s.batch for s, *_ in sent[1:]]}: on 'again', look for work again")

    r.delete(k.pending)
    said = LOOP.advance(r, k.day, "owner", turn=sent[-1][2])
    assert said == "finished" and not r.exists(lk.lock), (f"with no work left advance answered {said!r} and the "
                                                         f"lock is {'held' if r.exists(lk.lock) else 'gone'}: "
                                                         "end the loop as finished (self.end)")


@pytest.mark.exercise("3.3")
def test_one_turn_takes_its_turn_then_stops_sends_the_next_batch_or_finishes(redis, k, monkeypatch):
    judge_advance(redis, k, monkeypatch)


def ends_without_looking_again(self, r, day, owner, countdown=0.0, turn=Turn()):
    """A plausible 3.3: right but for `end`'s "again", which it returns instead of looking for work again."""
    k, following = self.keys(day), turn.next()
    if not lock.refresh(r, k.lock, k.turns, owner, turn.chain, turn.number, following.task_id, self.ttl_ms()):
        return "lost"
    if r.exists(k.stop):
        return self.end(r, k, owner, "stop")
    step = self.next_step(r, k.day)
    if step is not None:
        self.send(step, k.day, owner, following, countdown)
        return step.segment.name
    return self.end(r, k, owner, "finish")


@pytest.mark.wrong_attempt("3.3")
def test_a_turn_that_ignores_a_late_kick_fails_3_3_naming_the_stranded_stations(redis, k, monkeypatch):
    monkeypatch.setattr(Loop, "advance", ends_without_looking_again)
    with pytest.raises(AssertionError) as failed:
        judge_advance(redis, k, monkeypatch)
    said = str(failed.value)
    assert "end answered 'again'" in said and "advance answered 'again'" in said
    assert str(answer_key.station_ids(3)) in said, said


@pytest.mark.exercise("3.5")
def test_start_takes_the_lock_with_a_new_token_once_however_many_start_together(redis, k, monkeypatch):
    advanced = []
    monkeypatch.setattr(LOOP, "advance", lambda r, day, owner, *args, **kwargs: advanced.append((day, owner)))
    lk = LOOP.keys(k.day)

    owner = LOOP.start(redis, k.day, db="/tmp/x.sqlite3")
    assert isinstance(owner, str) and owner, f"start returns the new loop's owner token, got {owner!r}"
    assert lock.owner(redis, lk.lock) == owner, f"the lock holds the token start returned: {lock.owner(redis, lk.lock)!r}"
    assert 0 < redis.pttl(lk.lock) <= LOOP.ttl_ms(), "the lock expires on its own (a TTL: LOOP.ttl_ms())"
    assert advanced == [(k.day, owner)], f"start advances once, as its owner (the first batch): {advanced}"
    assert redis.sismember(LOOP.watched, k.day) and redis.hgetall(lk.options) == {"db": "/tmp/x.sqlite3"}, \
        "start begins the loop (self.begin: its options kept, the day watched) before its first turn"

    assert LOOP.start(redis, k.day) is None and len(advanced) == 1, "a second start while one runs: None, no turn"

    lock.release(redis, lk.lock, owner)
    barrier = threading.Barrier(10)

    def start():
        barrier.wait()
        return LOOP.start(redis, k.day)

    with ThreadPoolExecutor(10) as pool:
        owners = [o for o in pool.map(lambda _: start(), range(10)) if o is not None]
    assert len(owners) == 1 and len(advanced) == 2, \
        f"ten starts at once: one loop expected, {len(owners)} got a token and {len(advanced) - 1} advanced"
    assert owners[0] != owner, "each loop has a token of its own: a message of the old loop must not act for it"


@pytest.mark.exercise("3.6")
def test_the_watchdog_restarts_only_a_dead_loop_with_work_and_counts_it(redis, k, monkeypatch):
    started = []
    answer = {"token": "new-owner"}
    monkeypatch.setattr(LOOP, "start", lambda r, day, **options: started.append(day) or answer["token"])
    lk = LOOP.keys(k.day)
    stages.add(redis, k.pending, answer_key.station_ids(5))
    redis.sadd(LOOP.watched, k.day)

    LOOP.stop(redis, k.day)
    assert (watchdog.check_day(redis, LOOP, k.day), started) == ("stopped", []), "stopped on purpose: left alone"
    redis.delete(lk.stop)
    redis.set(lk.lock, "alive", px=10_000)
    assert (watchdog.check_day(redis, LOOP, k.day), started) == ("running", []), "its lock lives: left alone"
    redis.delete(lk.lock)
    assert watchdog.check_day(redis, LOOP, k.day) == "restarted" and started == [k.day], \
        "no lock, no stop switch, work left: restarted through loop.start"
    assert redis.get(lk.restarts) == "1", "the restart is counted in restarts"
    answer["token"] = None                 # a kick was quicker: start finds the lock taken
    assert watchdog.check_day(redis, LOOP, k.day) == "running" and redis.get(lk.restarts) == "1", \
        "start found a loop already running (None): not a restart"


@pytest.mark.exercises("3.3", "3.4")
def test_advance_by_a_stale_owner_is_lost_and_sends_nothing(redis, k, monkeypatch):
    stages.add(redis, k.pending, answer_key.station_ids(10))   # work to do, were the owner still in charge
    sent = []
    monkeypatch.setattr(LOOP, "send", lambda step, day, owner, *rest, **kwargs: sent.append((step, owner)))
    lk = LOOP.keys(k.day)
    assert lock.acquire(redis, lk.lock, "new-owner", 10_000)

    assert LOOP.advance(redis, k.day, "stale-owner") == "lost"
    assert sent == [], "a loop that lost its lock must not send a batch"
    assert LOOP.running(redis, k.day) == "new-owner" and redis.pttl(lk.lock) <= 10_000, "the lock is untouched"

    # The owner itself carries on: one batch sent, under its own token.
    assert LOOP.advance(redis, k.day, "new-owner") == "fetch"
    assert [(step.segment.name, owner) for step, owner in sent] == [("fetch", "new-owner")]


@pytest.mark.exercise("3.6")
def test_the_watchdog_leaves_a_day_without_work_idle(redis, k, monkeypatch):
    sent = []
    monkeypatch.setattr(LOOP, "send", lambda *args, **kwargs: sent.append(args))
    lk = LOOP.keys(k.day)
    redis.sadd(LOOP.watched, k.day)   # watched, but nothing in any segment

    assert watchdog.check_day(redis, LOOP, k.day) == "idle"
    assert sent == [] and not redis.exists(lk.lock, lk.restarts), "no kick, no lock, no restart"
    assert not redis.sismember(LOOP.watched, k.day), "an idle day is no longer watched"
    assert watchdog.check(redis, LOOP) == {}


# ---------------------------------------------------------------- the loop


@loop_exercises
def test_the_loop_drains_every_station_exactly_once_and_the_results_equal_the_answer_key(
        redis, fake_api, worker, db, k):
    api = fake_api(stations=N, glitch_rate=0.05)
    ids = answer_key.station_ids(N)
    pipeline.discover(k.day)

    owner = pipeline.kick(redis, k.day)   # no beat anywhere in this test: the loop drives itself
    finish(redis, k)

    assert_complete_and_correct(redis, k, db, api, ids)
    stats = api.stats()
    assert stats["fetches"] == {s: 1 for s in ids}, "every station fetched exactly once"
    batches = math.ceil(N / batch_size())
    assert stats["requests"] == batches + 1, "one request per batch, plus the listing"
    rows = iterations(redis, k)
    print(f"\n[ch03 loop] {N} stations, {len(rows)} iterations "
          f"({Counter(e['task'] for e in rows)}), {stats['requests']} API requests, "
          f"{rows[-1]['finished'] - rows[0]['started']:.2f} s")
    assert [e["task"] for e in rows] == ["fetch_batch"] * batches + ["transform_batch", "persist_batch"]
    assert {e["owner"] for e in rows} == {owner} and all(e["state"] == "SUCCESS" for e in rows)
    assert rows[0]["parent_id"] == "", "the first batch is sent by kick"
    assert_one_chain(rows)
    assert LOOP.running(redis, k.day) is None, "the loop let go of its lock"
    assert not redis.sismember(LOOP.watched, k.day), "nothing left for the watchdog to watch"


@loop_exercises
def test_the_next_segment_starts_only_after_the_last_batch_of_the_one_before(
        redis, fake_api, worker, db, k, monkeypatch):
    use(monkeypatch, batch_size=5)
    api = fake_api(stations=N)
    pipeline.discover(k.day)
    seen = []   # what each transform / persist batch found when it started

    def probe(sender, **_):
        seen.append((sender.name.rsplit(".", 1)[-1], stages.count(redis, k.pending), stages.count(redis, k.fetched), time.time()))

    on_prerun(tasks.transform_batch, probe)
    on_prerun(tasks.persist_batch, probe)
    try:
        pipeline.kick(redis, k.day)
        finish(redis, k)
    finally:
        task_prerun.disconnect(probe, sender=tasks.transform_batch)
        task_prerun.disconnect(probe, sender=tasks.persist_batch)

    assert_complete_and_correct(redis, k, db, api, answer_key.station_ids(N))
    assert [name for name, *_ in seen] == ["transform_batch", "persist_batch"]
    (_, pending_at_transform, _, transform_at), (_, pending_at_persist, fetched_at_persist, _) = seen
    assert pending_at_transform == 0, "transform started while stations were still waiting to be fetched"
    assert (pending_at_persist, fetched_at_persist) == (0, 0), "persist started before transform was done"
    assert transform_at > api.stats()["last_request_at"], "transform started before the last API request"
    fetches = iterations(redis, k, "fetch_batch")
    assert len(fetches) == N // 5 and transform_at >= max(e["started"] for e in fetches)


# ---------------------------------------------------------------- one loop per pipeline


@loop_exercises
def test_ten_concurrent_kicks_start_exactly_one_loop(redis, fake_api, worker, db, k, monkeypatch):
    use(monkeypatch, batch_size=5)
    api = fake_api(stations=N)
    pipeline.discover(k.day)
    start = threading.Barrier(10)

    def kick(_):
        start.wait()   # all ten at the same moment
        return pipeline.kick(redis, k.day)

    # And ten more from inside the running loop, while its third batch is starting.
    during, fetches_started = [], []

    def kick_while_running(sender, **_):
        fetches_started.append(sender)
        if len(fetches_started) == 3:
            with ThreadPoolExecutor(10) as pool:
                during.extend(pool.map(lambda _: pipeline.kick(redis, k.day), range(10)))

    on_prerun(tasks.fetch_batch, kick_while_running)
    try:
        with ThreadPoolExecutor(10) as pool:
            owners = list(pool.map(kick, range(10)))
        finish(redis, k)
    finally:
        task_prerun.disconnect(kick_while_running, sender=tasks.fetch_batch)

    started = [owner for owner in owners if owner]
    rows = iterations(redis, k)
    print(f"\n[ch03 kicks] 10 concurrent kicks started {len(started)} loop(s); 10 kicks during the run "
          f"started {sum(map(bool, during))}; {len(rows)} iterations, owners {len({e['owner'] for e in rows})}")
    assert len(started) == 1, "exactly one of ten concurrent kicks starts a loop"
    assert during == [None] * 10, "a kick while the loop runs is a no-op"
    assert {e["owner"] for e in rows} == set(started)
    assert len(iterations(redis, k, "fetch_batch")) == N // 5, "one iteration per batch, no more"
    assert_one_chain(rows)
    assert api.stats()["fetches"] == {s: 1 for s in answer_key.station_ids(N)}
    assert_complete_and_correct(redis, k, db, api, answer_key.station_ids(N))


@loop_exercises
def test_stop_ends_the_loop_after_the_batch_in_flight_and_kick_resumes_it_to_a_complete_run(
        redis, fake_api, worker, db, k, monkeypatch):
    use(monkeypatch, batch_size=5)
    api = fake_api(stations=N)
    ids = answer_key.station_ids(N)
    pipeline.discover(k.day)

    fetches_started = []

    def stop_at_third_batch(sender, **_):
        fetches_started.append(sender)
        if len(fetches_started) == 3:
            pipeline.stop(redis, k.day)   # while the third batch is in flight

    on_prerun(tasks.fetch_batch, stop_at_third_batch)
    try:
        first = pipeline.kick(redis, k.day)
        assert LOOP.wait(redis, k.day, TIMEOUT, until=lambda: LOOP.running(redis, k.day) is None) is False
    finally:
        task_prerun.disconnect(stop_at_third_batch, sender=tasks.fetch_batch)

    # Stopped: the batch in flight finished, no next one was sent, the lock is gone. The lock goes
    # in the third batch's task_success handler, its history entry a moment later (task_postrun).
    rows = history.wait(redis, k.day, lambda rows: sum(e["task"] == "fetch_batch" for e in rows) >= 3)
    assert [e["task"] for e in rows] == ["fetch_batch"] * 3
    assert stages.count(redis, k.fetched) == 15 and stages.count(redis, k.pending) == N - 15
    assert not LOOP.finished(redis, k.day)
    assert watchdog.check(redis, LOOP) == {k.day: "stopped"}, "the watchdog leaves a stopped loop alone"
    assert LOOP.running(redis, k.day) is None

    second = pipeline.kick(redis, k.day)
    finish(redis, k)

    rows = iterations(redis, k)
    print(f"\n[ch03 stop] stopped after 3 batches (15 of {N} fetched); kick resumed: "
          f"{len(rows)} iterations by {len({e['owner'] for e in rows})} loops, one after the other")
    assert second and second != first
    assert [e["owner"] for e in rows] == [first] * 3 + [second] * (len(rows) - 3)
    assert rows[3]["first"] == sorted(ids)[15], "resumed where it stopped"
    assert api.stats()["fetches"] == {s: 1 for s in ids}, "no station fetched twice"
    assert_complete_and_correct(redis, k, db, api, ids)


@loop_exercises
def test_a_kick_racing_the_end_of_a_loop_never_strands_work_200_trials_no_beat(
        redis, fake_api, worker, db, k, monkeypatch):
    """A one-batch day; when its persist starts, a second station arrives with a kick, 0-12 ms later:
    before, during or after the loop's end. Either the running loop takes it, or the kick starts a new one."""
    fake_api(stations=N)
    trials, rng = 200, random.Random(3)
    days = [(dt.date(2027, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(trials)]
    extra, threads, kicks = {}, {}, {}

    def kick_around_the_end(sender, args=(), **_):
        day = args[1]
        if day in extra and day not in threads:
            def late_kick():
                time.sleep(rng.uniform(0, 0.012))
                stages.add(redis, segment_keys.for_day(day).pending, [extra[day]])
                kicks[day] = pipeline.kick(redis, day)
            thread = threading.Thread(target=late_kick)
            thread.start()
            threads[day] = thread

    on_prerun(tasks.persist_batch, kick_around_the_end)
    ids = answer_key.station_ids(N)
    stalled = []
    try:
        for i, day in enumerate(days):
            sk = segment_keys.for_day(day)
            extra[day] = ids[(i + 1) % N]
            stages.add(redis, sk.stations, [ids[i % N], extra[day]])
            stages.add(redis, sk.pending, [ids[i % N]])
            pipeline.kick(redis, day)
            deadline = time.monotonic() + 10
            while day not in threads:
                assert time.monotonic() < deadline, f"{day}: the first loop never reached persist"
                time.sleep(0.002)
            threads[day].join(timeout=10)
            if not LOOP.wait(redis, day, 10) or stages.count(redis, sk.persisted) != 2:
                stalled.append((day, LOOP.status(redis, day), redis.sismember(LOOP.watched, day)))
    finally:
        task_prerun.disconnect(kick_around_the_end, sender=tasks.persist_batch)

    started = sum(owner is not None for owner in kicks.values())
    print(f"\n[ch03 kick vs end] {trials} trials: the late kick found the loop running {trials - started} times, "
          f"started a new one {started} times; stalled: {len(stalled)}")
    assert not stalled, f"days left with work and no loop: {stalled[:3]}"
    assert 0 < started < trials, "the kicks landed on both sides of the loop's end"
    assert len(database.rows(db, days[0])) == 2


@loop_exercises
def test_a_poison_station_is_found_by_halving_and_set_aside_while_the_day_goes_on(
        redis, fake_api, worker, db, k):
    ids = answer_key.station_ids(N)
    poison = ids[29]
    api = fake_api(stations=N, null_stations=[poison])   # a null temperature: the transform raises TypeError
    pipeline.discover(k.day)

    pipeline.kick(redis, k.day)
    finish(redis, k)

    set_aside = LOOP.poison(redis, k.day)
    failed = [e["stations"] for e in iterations(redis, k, "transform_batch") if e["state"] == "FAILURE"]
    print(f"\n[ch03 poison] failed transform batches of {failed} stations; set aside {set_aside}")
    assert list(set_aside) == [poison] and set_aside[poison]["segment"] == "transform"
    assert set_aside[poison]["detail"].startswith("TypeError")
    assert failed == sorted(failed, reverse=True) and failed[-1] == 1, "smaller and smaller, down to one"
    assert len(failed) <= 2 + (50).bit_length(), "found by halving, not one failure per station"
    rows = database.rows(db, k.day)
    assert [row["station"] for row in rows] == [s for s in ids if s != poison], "every other station persisted"
    assert all(answer_key.same_summary(row, answer_key.expected_summary(row["station"], k.day, api.config.seed))
               for row in rows)
    assert not redis.exists(LOOP.keys(k.day).failures), "the failure counts go with success"


# ---------------------------------------------------------------- a loop that dies silently


@loop_exercises
@pytest.mark.exercises("3.6")
def test_a_handler_that_raises_once_kills_the_loop_silently_and_the_watchdog_restores_it(
        redis, fake_api, worker, db, k, monkeypatch):
    use(monkeypatch, batch_size=5, ch03_lock_ttl=3, beat_interval=0.5)
    api = fake_api(stations=N)
    ids = answer_key.station_ids(N)
    pipeline.discover(k.day)
    send, calls = LOOP.send, []

    def broken_send(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:   # in the handler of the second batch: Celery logs it and carries on
            raise RuntimeError("a bug in the handler")
        return send(*args, **kwargs)

    monkeypatch.setattr(LOOP, "send", broken_send)
    first = pipeline.kick(redis, k.day)
    # Dead: two batches ran, the third was never sent; the lock (TTL 3 s) expires on its own.
    assert LOOP.wait(redis, k.day, TIMEOUT, until=lambda: LOOP.running(redis, k.day) is None) is False
    assert len(iterations(redis, k)) == 2 and stages.count(redis, k.pending) == N - 10

    app.conf.beat_schedule = beat_schedule(settings_mod.load())   # the watchdog, every 0.5 s
    with EmbeddedBeat(app, max_interval=0.2):
        finish(redis, k)

    rows = iterations(redis, k)
    owners = list(dict.fromkeys(e["owner"] for e in rows))
    restarts = int(redis.get(LOOP.keys(k.day).restarts) or 0)
    print(f"\n[ch03 watchdog] the loop died after 2 batches; the watchdog restarted it {restarts} time(s); "
          f"{len(rows)} iterations, fetches per station {sorted(set(api.stats()['fetches'].values()))}")
    assert owners[0] == first and len(owners) >= 2 and restarts >= 1
    restarted = next(e for e in rows if e["owner"] == owners[1])
    assert restarted["parent_id"] not in {e["task_id"] for e in rows}, "the watchdog task sent it, not a batch"
    assert restarted["first"] == sorted(ids)[10], "the new loop took over where the dead one stopped"
    assert_complete_and_correct(redis, k, db, api, ids)


# ---------------------------------------------------------------- secondary work on signals


@loop_exercises
@pytest.mark.exercises("3.2")
def test_the_error_log_and_the_history_match_the_injected_faults(redis, fake_api, worker, db, k, monkeypatch):
    # 5xx, broken bodies, and responses slower than the client's timeout (a wide margin: the
    # timeout is generous, so only the injected slow ones time out, even on a busy machine; they
    # are far past it); no 429s (a generous limit).
    use(monkeypatch, batch_size=4, request_timeout=2.5)
    api = fake_api(stations=N, error_rate=0.1, malformed_rate=0.15, slow_rate=0.05, slow_seconds=4.0,
                   rate=100, burst=100)
    ids = answer_key.station_ids(N)
    pipeline.discover(k.day)

    pipeline.kick(redis, k.day)
    finish(redis, k)

    stats = api.stats()
    faults = stats["fault_log"]
    errors = error_log.entries(redis, k.day)
    fetches = iterations(redis, k, "fetch_batch")
    print(f"\n[ch03 error log] API faults {stats['faults']}; error log {len(errors)} entries; "
          f"fetch history {Counter(e['state'] for e in fetches)}")
    assert {f["kind"] for f in faults} == {"error", "malformed", "slow"} and stats["rate_limited"] == 0
    # One error-log entry per injected fault, in the same order, for the same batch, saying why.
    assert len(errors) == len(faults)
    why = {"error": "HTTP 5", "malformed": "JSONDecodeError", "slow": "Timeout"}
    for entry, fault in zip(errors, faults):
        assert entry["task"] == "fetch_batch" and entry["batch"] == sorted(fault["stations"])
        assert entry["exception"].startswith("BatchFailed") and why[fault["kind"]] in entry["exception"], entry
    # The history: one entry per API request; failures exactly where the faults were.
    assert len(fetches) == stats["requests"] - 1   # minus the listing
    assert sum(e["state"] == "FAILURE" for e in fetches) == len(faults)
    assert sum(e["state"] == "SUCCESS" for e in fetches) == N // 4
    assert [e["task"] for e in iterations(redis, k)][-2:] == ["transform_batch", "persist_batch"]
    assert_one_chain(iterations(redis, k))   # the loop went on after every failure
    assert_complete_and_correct(redis, k, db, api, ids)


# ---------------------------------------------------------------- real worker processes


@loop_exercises
def test_with_two_worker_processes_still_one_loop_and_a_complete_run(
        redis, fake_api, db, k, worker_processes, beat_process, monkeypatch):
    """Two `celery worker` processes (prefork, two pool processes each) and a real beat running the
    watchdog every 0.5 s: the handlers run in the pool processes, the kicks come from here."""
    use(monkeypatch, batch_size=5, beat_interval=0.5)
    n = 60
    api = fake_api(stations=n)
    ids = answer_key.station_ids(n)
    workers = worker_processes("ch03_signals.app", 2, pool="prefork", concurrency=2)
    beat_process("ch03_signals.app", max_interval=1)
    pipeline.discover(k.day)

    start = threading.Barrier(10)

    def kick(_):
        start.wait()
        return pipeline.kick(redis, k.day)

    with ThreadPoolExecutor(10) as pool:
        owners = [owner for owner in pool.map(kick, range(10)) if owner]
    finish(redis, k, timeout=90)

    rows = iterations(redis, k)
    where = Counter(e["worker"] for e in rows)
    print(f"\n[ch03 processes] {len(rows)} iterations in {len(where)} pool processes {dict(where)}; "
          f"owners {len({e['owner'] for e in rows})}, watchdog restarts "
          f"{int(redis.get(LOOP.keys(k.day).restarts) or 0)}")
    assert len(owners) == 1 and {e["owner"] for e in rows} == set(owners)
    assert len(iterations(redis, k, "fetch_batch")) == n // 5
    assert_one_chain(rows)
    assert not redis.get(LOOP.keys(k.day).restarts), "the watchdog never restarts a live loop"
    assert all(e["worker"].split("@")[0] in {name.split("@")[0] for name in workers.names} for e in rows)
    assert api.stats()["fetches"] == {s: 1 for s in ids}
    assert_complete_and_correct(redis, k, db, api, ids)
