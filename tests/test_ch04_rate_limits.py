"""Chapter 4: one rate limit for every worker, and nothing lost through failures.

The pieces alone, against the session's Redis: the limiter script (many callers,
threads and processes, never granted more than the limit and not far less), the
Retry-After parser and the loop-wide pause, backoff and dead letters, leases and
their reaper, the crash-safe Celery configuration. Then the whole loop, with two
real worker processes, against the fake API: a clean day, a faulty one, a worker
killed mid-batch, and a 429 storm.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import requests
from celery.exceptions import Retry

from workshop import settings as settings_mod, stations as answer_key, target
from workshop.api import ApiConfig, draw_fault
from workshop.lua import Script

from ch02_segmented import stages
from ch03_signals import error_log, history, loop as ch03_loop
from ch04_rate_limits import client, dead_letters, keys, leases, limiter, pause, pipeline, retries, retry_after, safety
from ch04_rate_limits.app import app

DAY = "2026-01-15"
APP = "ch04_rate_limits.app"
# A whole day touches every exercise: the limiter, the pause and Retry-After (on a 429), the reaper.
EXERCISES = ("4.1", "4.2", "4.3", "4.4")
all_exercises = pytest.mark.exercises(*EXERCISES)


def redis_now(r) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


# ---------------------------------------------------------------- the limiter

def assert_a_burst_then_the_wait(r) -> None:
    """Exercise 4.1's promise at 1/s, burst 4: four requests go at once, then each waits for the next slot."""
    # 1/s: a slot every 1000 ms, far longer than these few round trips take even on a loaded machine.
    limiter.configure(r, limiter.Limit(1, 4), jitter=0)
    gate = limiter.GlobalLimiter(r)
    state = keys.ApiKeys().state
    answers = [gate.check() for _ in range(4)]
    assert answers == [0, 0, 0, 0], f"at 1/s with a burst of 4, the first 4 requests go at once (0); got {answers}"
    tat = float(r.get(state))
    for n in (5, 6):
        # Then wait for the next slot: exactly until the TAT is no more than burst - 1 intervals ahead,
        # on Redis's clock (read before and after the check, so no assumption on how long it took).
        before = redis_now(r) * 1000
        wait = gate.check()
        after = redis_now(r) * 1000
        assert 0 < wait <= 1000, (f"request {n} of a burst of 4 at 1/s got {wait} ms: it must wait for the next "
                                  "slot (0 < ms <= 1000): the TAT may be at most interval * (burst - 1) ahead")
        assert tat - 3 * 1000 - after <= wait <= tat - 3 * 1000 - before + 1, \
            f"request {n} waits until the TAT is burst - 1 intervals ahead: {tat - 3000 - after:.0f} ms, got {wait}"
        # A refused request takes nothing: the limiter's state is as it was, the next slot no further away.
        assert float(r.get(state)) == tat, f"refused request {n} moved the TAT from {tat} to {r.get(state)}"


@pytest.mark.exercise("4.1")
def test_the_limiter_answers_go_for_a_burst_then_the_wait_until_the_next_slot(redis):
    assert_a_burst_then_the_wait(redis)


# A plausible 4.1: the whole burst ahead of now instead of burst - 1 intervals, one request too many.
ONE_TOO_MANY = """
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = tat - interval * burst - now
if wait > 0 then return math.ceil(wait) end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 0
"""


@pytest.mark.wrong_attempt("4.1")
def test_a_limiter_one_request_over_its_burst_fails_4_1_naming_the_request(redis, monkeypatch):
    monkeypatch.setattr(limiter, "_GCRA", Script(lambda: limiter._PROLOGUE + ONE_TOO_MANY))
    with pytest.raises(AssertionError) as failed:
        assert_a_burst_then_the_wait(redis)
    assert "request 5 of a burst of 4 at 1/s got 0 ms" in str(failed.value), str(failed.value)


@pytest.mark.exercise("4.1")
def test_the_limiter_says_clearly_when_no_one_told_it_the_limit(redis):
    with pytest.raises(limiter.NoLimitError, match="configure"):
        limiter.GlobalLimiter(redis).check()


def test_the_limiter_keeps_a_cushion_in_the_apis_bucket_and_follows_the_published_rate(redis):
    # The API's rate is enforced as is; only its burst is trimmed by rate * jitter.
    assert limiter.with_headroom(limiter.Limit(20, 20), jitter=0.25) == (20, 15)
    # Never more than a bit under half the burst: the rest lets late requests be made up.
    assert limiter.with_headroom(limiter.Limit(50, 10), jitter=0.5) == (50, 6)
    assert limiter.with_headroom(limiter.Limit(50, 5), jitter=0.5) == (50, 3)
    # Too small a burst to trim: the margin is taken in time, a 5 % longer interval.
    assert limiter.with_headroom(limiter.Limit(5, 2), jitter=0.5) == (5 * 0.95, 2)
    assert limiter.with_headroom(limiter.Limit(1, 1), jitter=0.5) == (0.95, 1)
    assert limiter.with_headroom(limiter.Limit(1, 1), jitter=0) == (1, 1), "no jitter: the published limit"
    limiter.configure(redis, limiter.Limit(20, 20))
    assert limiter.learn(redis, "20") is None, "same rate: nothing to change"
    assert limiter.learn(redis, "junk") is None and limiter.learn(redis, "-3") is None
    assert limiter.learn(redis, "4") == (4, 20 - math.ceil(4 * limiter.JITTER))
    assert limiter.current(redis) == {"rate": 4.0, "burst": 20 - math.ceil(4 * limiter.JITTER), "api_rate": 4.0,
                                      "api_burst": 20, "jitter": limiter.JITTER}


def test_a_learned_limit_survives_the_next_run_unless_the_published_one_changed(redis):
    published = limiter.Limit(10, 10)
    assert pipeline.prepare(redis, published) == limiter.with_headroom(published)
    learned = limiter.learn(redis, "4")                       # the API said X-RateLimit-Limit: 4
    assert pipeline.prepare(redis, published) == learned, "the next kick keeps what the API said since"
    assert limiter.current(redis)["api_rate"] == 4.0
    assert pipeline.prepare(redis, limiter.Limit(12, 10)) == limiter.with_headroom(limiter.Limit(12, 10)), \
        "a new published limit is configured"
    assert limiter.current(redis)["api_rate"] == 12.0


@pytest.mark.exercise("4.1")
def test_resetting_a_day_leaves_the_apis_limit_to_the_other_days_loops(redis):
    other = keys.for_day("2026-01-16")
    limiter.configure(redis, limiter.Limit(10, 10))
    stages.add(redis, keys.for_day(DAY).pending, ["WX00001"])
    stages.add(redis, other.pending, ["WX00002"])
    pipeline.reset(redis, DAY)
    assert not redis.exists(keys.for_day(DAY).pending) and set(stages.members(redis, other.pending)) == {"WX00002"}
    assert limiter.GlobalLimiter(redis).check() == 0, "another day's loop still finds the limit"
    pipeline.reset_limits(redis)
    assert not any(redis.exists(key) for key in keys.ApiKeys().all())
    with pytest.raises(limiter.NoLimitError):
        limiter.GlobalLimiter(redis).check()


def ask_until(gate, end, grants, lock):
    """One caller: asks as acquire() does, as fast as the limiter lets it, never past `end` (local clock);
    each grant stamped on Redis's clock (TIME, right after the check that took it).

    It asks again 2 ms before the slot it was told of, then at once: sleeping the rounded-up wait would
    arrive up to 1 ms late, and at burst 1 a late ask loses that time for good (a full bucket keeps no
    credit). Runs in this process's threads, and, as source, in CALLER's.
    """
    import time
    while time.time() < end:
        wait = gate.check() / 1000
        if wait == 0:
            seconds, micros = gate.r.time()
            with lock:
                grants.append(seconds + micros / 1e6)
        elif time.time() + wait < end:
            time.sleep(max(0.0, wait - 0.002))
        else:
            break


CALLER = inspect.getsource(ask_until) + """
import json, sys, threading
import redis
from ch04_rate_limits.limiter import GlobalLimiter
url, barrier, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
grants, lock = [], threading.Lock()
gates = [GlobalLimiter(redis.Redis.from_url(url, decode_responses=True)) for _ in range(threads)]
for gate in gates:
    gate.r.ping()                                  # connected, the script registered: ready
r = redis.Redis.from_url(url, decode_responses=True)
r.incr(barrier + ":ready")
end = float(r.blpop([barrier + ":go"], timeout=120)[1])   # the window's end, pushed when everyone is ready
workers = [threading.Thread(target=ask_until, args=(gate, end, grants, lock)) for gate in gates]
[w.start() for w in workers]
[w.join() for w in workers]
print(json.dumps(grants))
"""


def race(redis, redis_server, barrier: str, seconds: float, before_go=lambda: None,
         processes: int = 2, threads: int = 3) -> list[list[float]]:
    """`processes` CALLER processes and this one, `threads` callers each, all asking for `seconds` from
    the go (given right after `before_go()`): the grants' times on Redis's clock, this process's first."""
    env = dict(os.environ, PYTHONPATH=target.pythonpath())
    callers = [subprocess.Popen([sys.executable, "-c", CALLER, redis_server.url, barrier, str(threads)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(processes)]
    try:
        # A barrier in Redis, not a guess at how long the processes take to start: the window opens once
        # all have imported, connected and said so.
        deadline = time.monotonic() + 120
        while int(redis.get(f"{barrier}:ready") or 0) < len(callers):
            assert time.monotonic() < deadline and all(p.poll() is None for p in callers), \
                f"the caller processes did not get ready: {[p.poll() for p in callers]}"
            time.sleep(0.05)
        gates = [limiter.GlobalLimiter(redis_server.client()) for _ in range(threads)]
        for gate in gates:
            gate.r.ping()
        grants: list[float] = []
        lock, go, window = threading.Lock(), threading.Event(), {}

        def ask_from_the_go(gate):   # this process's callers are started before the go, as the others are
            go.wait()
            ask_until(gate, window["end"], grants, lock)
        here = [threading.Thread(target=ask_from_the_go, args=(gate,), daemon=True) for gate in gates]
        for thread in here:
            thread.start()
        try:
            before_go()
            window["end"] = end = time.time() + seconds
            redis.rpush(f"{barrier}:go", *[end] * len(callers))
        finally:   # whatever failed above (a stub raises), the threads are let go: no window left, they end
            window.setdefault("end", 0.0)
            go.set()
        for thread in here:
            thread.join()
        per_process = []
        for process in callers:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            per_process.append(json.loads(out))
        return [grants, *per_process]
    finally:
        for process in callers:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_many_callers_in_threads_and_processes_get_no_more_than_the_limit_and_not_far_less(redis, redis_server):
    """Two processes and this one, three threads each, all asking as fast as the limiter lets them, for 3 s."""
    rate, burst, seconds = 20.0, 5, 3.0
    limiter.configure(redis, limiter.Limit(rate, burst), jitter=0)
    grants, *per_process = race(redis, redis_server, "test:ch04:callers", seconds)
    everyone = sorted(grants + [t for p in per_process for t in p])

    # Every grant was asked for within the window: the limit allows a burst plus the rate over that.
    allowed = burst + rate * seconds
    print(f"\n{len(everyone)} grants in {seconds:g} s (allowed {allowed:g}): this process {len(grants)}, "
          f"the others {[len(p) for p in per_process]}")
    assert all(len(p) > 0 for p in per_process), "every process got some"
    assert len(everyone) <= allowed + 1, "never more than the limit"
    assert len(everyone) >= 0.85 * allowed, "and not far less"
    # Nor more than a burst's worth early in any one second.
    for i, t in enumerate(everyone):
        in_a_second = sum(1 for u in everyone[i:] if u < t + 1.0)
        assert in_a_second <= burst + rate + 2, f"{in_a_second} grants within one second from {t}"


# At burst 1 a late ask loses its lateness for good, and these callers are each ~0.2 ms late (Python, a
# round trip; more on a busy machine): over 0.25 s, 12 slots, that stays well under one interval (20 ms).
# A bucket of 5 or more absorbs it: there the last grant's lateness is all that counts.
# Burst 1 over 0.25 s is exercise 4.1's own (several processes, about a second in all); the rest, the chapter's.
@pytest.mark.parametrize("burst, seconds", [pytest.param(1, 0.25, marks=pytest.mark.exercise("4.1")), (5, 2.0),
                                            (50, 2.0)])
def test_at_50_per_s_and_burst_1_5_or_50_several_processes_are_granted_never_more_than_the_ideal_and_near_it(
        burst, seconds, redis, redis_server):
    """Two processes and this one, three callers each, for `seconds`: count against burst + rate x window.

    GCRA's exact count: from the first grant at t0 (the bucket full), the k-th grant after it (k from 0)
    is due at t0 + (k - burst + 1) / rate, the first `burst` at once. So n grants by the last one, at t1,
    are never more than burst + rate x (t1 - t0); and callers that keep asking take every slot as it
    opens, the last one within an interval of its slot, so n is more than that less 1. The window is
    anchored on grants, on Redis's clock: t0 is the script's own time of the first grant (this process
    takes it before the others start: its TAT less one interval), t1 the TIME right after the last one.

    The upper bound is the limiter's promise and holds exactly. The lower one also depends on the callers
    being scheduled when a slot opens: on an idle machine n is within 1 of the ideal (printed), but on two
    cores shared with another test process a caller can sleep through a slot (CI saw 11 of 13.04 in
    0.25 s). So it allows a fifth of the window's slots lost to scheduling: a limiter that wastes slots of
    its own (half the rate, say) still fails it.
    """
    rate = 50.0
    assert limiter.configure(redis, limiter.Limit(rate, burst), jitter=0) == (rate, burst), "the exact limit"
    first = {}

    def take_the_first():
        assert limiter.GlobalLimiter(redis).check() == 0
        first["t0"] = float(redis.get(keys.ApiKeys().state)) / 1000 - 1 / rate

    grants = race(redis, redis_server, f"test:ch04:window:{burst}", seconds, before_go=take_the_first)
    everyone = sorted(t for g in grants for t in g)
    t0, t1, granted = first["t0"], everyone[-1], 1 + len(everyone)
    ideal = burst + rate * (t1 - t0)
    print(f"\nburst {burst}: {granted} grants in {t1 - t0:.4f} s of Redis's clock, ideal {ideal:.3f}; "
          f"per process {[len(g) for g in grants]}")
    assert all(grants[1:]) and t1 - t0 > seconds - 0.1, "every process asked, over the whole window"
    assert granted <= ideal + 0.01, "never more than the ideal (t0 is kept to the microsecond)"
    assert granted > ideal - 1 - 0.2 * rate * (t1 - t0), "and near it: no more than a fifth of the slots lost"


# ---------------------------------------------------------------- Retry-After and the pause

@pytest.mark.exercise("4.3")
@pytest.mark.parametrize("header, seconds, form", [
    ("120", 120.0, "delay-seconds"),
    ("  7 ", 7.0, "delay-seconds"),
    ("0", 0.0, "delay-seconds"),
    ("Thu, 15 Jan 2026 12:00:30 GMT", 30.0, "http-date"),              # IMF-fixdate
    ("Thursday, 15-Jan-26 12:00:45 GMT", 45.0, "http-date"),           # RFC 850, obsolete
    ("Thu Jan 15 12:00:05 2026", 5.0, "http-date"),                    # asctime, obsolete, no zone: GMT
    ("Thu, 15 Jan 2026 11:59:00 GMT", 0.0, "http-date"),               # in the past: go now
    ("99999999", retry_after.LONGEST, "delay-seconds"),                # capped
    ("9" * 400, retry_after.LONGEST, "delay-seconds"),                 # past a float: still capped, no crash
    ("9" * 5000, retry_after.LONGEST, "delay-seconds"),                # past Python's int-from-text limit too
    ("Fri, 15 Jan 2027 12:00:00 GMT", retry_after.LONGEST, "http-date"),
    ("", retry_after.FALLBACK, "fallback"),
    (None, retry_after.FALLBACK, "fallback"),
    ("soon", retry_after.FALLBACK, "fallback"),
    ("-5", retry_after.FALLBACK, "fallback"),
    ("1.5", retry_after.FALLBACK, "fallback"),                         # delay-seconds are whole
    ("Thu, 31 Feb 2026 12:00:00 GMT", retry_after.FALLBACK, "fallback"),
    ("٣", retry_after.FALLBACK, "fallback"),                           # a digit, but not an ASCII one
    # RFC 9110's own examples, all in the past: go now
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0, "http-date"),
    ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0, "http-date"),              # 2094 is > 50 years ahead: 1994
    ("Sun Nov  6 08:49:37 1994", 0.0, "http-date"),
    ("Sun Feb  1 12:00:00 2026", retry_after.LONGEST, "http-date"),    # asctime, day padded with a space
    ("Sun Feb 01 12:00:00 2026", retry_after.LONGEST, "http-date"),    # ... or written with two digits
    ("Thu, 15 Jan 2026 11:59:60 GMT", 0.0, "http-date"),               # a leap second (RFC 5322 §3.3)
    ("Thu, 15 Jan 2026 11:59:61 GMT", retry_after.FALLBACK, "fallback"),
    ("\t7\t", 7.0, "delay-seconds"),                                   # HTTP's whitespace is SP and HTAB
    ("Thursday, 15-Jan-76 12:00:00 GMT", retry_after.LONGEST, "http-date"),  # exactly 50 years ahead: 2076
    ("Thursday, 15-Jan-76 12:00:01 GMT", 0.0, "http-date"),           # a second more: 1976
    # junk
    ("Thu, 15 Jan 2026 12:00:30 +0100", retry_after.FALLBACK, "fallback"),   # HTTP-dates are GMT, no offset
    ("Thu, 15 Jan 2026 12:00:30 +0000", retry_after.FALLBACK, "fallback"),
    ("Thu, 15 Jan 2026 12:00:30 UTC", retry_after.FALLBACK, "fallback"),
    ("Thu, 15 Jan 2026 12:00:30 EST", retry_after.FALLBACK, "fallback"),
    ("Thu, 15 Jan 2026 12:00:30 gmt", retry_after.FALLBACK, "fallback"),     # case-sensitive
    ("Thu, 15 jan 2026 12:00:30 GMT", retry_after.FALLBACK, "fallback"),
    ("thu, 15 Jan 2026 12:00:30 GMT", retry_after.FALLBACK, "fallback"),
    ("Thu, 15 Jan 2026 12:00 GMT", retry_after.FALLBACK, "fallback"),        # no seconds
    ("Thu, 5 Jan 2026 12:00:30 GMT", retry_after.FALLBACK, "fallback"),      # day is 2DIGIT
    ("Thu, 15 Jan 26 12:00:30 GMT", retry_after.FALLBACK, "fallback"),       # IMF-fixdate year is 4DIGIT
    ("15 Jan 2026 12:00:30 GMT", retry_after.FALLBACK, "fallback"),          # no day name
    ("Thu, 15 January 2026 12:00:30 GMT", retry_after.FALLBACK, "fallback"),
    ("Thu, 15-Jan-26 12:00:30 GMT", retry_after.FALLBACK, "fallback"),       # RFC 850 spells the day out
    ("Thu Jan 5 12:00:05 2026", retry_after.FALLBACK, "fallback"),           # asctime pads the day
    ("Thu Jan 15 12:00:05 2026 GMT", retry_after.FALLBACK, "fallback"),      # asctime has no zone
    ("Thu, 15 Jan 2026 24:00:00 GMT", retry_after.FALLBACK, "fallback"),
    ("2026-01-15T12:00:30Z", retry_after.FALLBACK, "fallback"),
    ("-3", retry_after.FALLBACK, "fallback"),
    ("+3", retry_after.FALLBACK, "fallback"),
    ("1e3", retry_after.FALLBACK, "fallback"),
    ("3 s", retry_after.FALLBACK, "fallback"),
    ("7\n", retry_after.FALLBACK, "fallback"),
    ("   ", retry_after.FALLBACK, "fallback"),
])
def test_retry_after_reads_both_forms_and_falls_back_clearly_on_junk(header, seconds, form):
    now = 1768478400.0   # Thu, 15 Jan 2026 12:00:00 GMT
    wait = retry_after.parse(header, now=now)
    assert (wait.seconds, wait.form) == (pytest.approx(seconds), form)
    if form == "fallback":
        assert "not a Retry-After" in str(wait)


@pytest.mark.exercise("4.3")
@pytest.mark.parametrize("header", ["Thu, 15 Jan 2026 12:00:30 +0100", "Thu, 15 Jan 2026 12:00:30 UTC",
                                    "Thu, 15 Jan 2026 12:00:30 EST", "Thu, 15 jan 2026 12:00:30 GMT",
                                    "Thu, 15 Jan 2026 12:00 GMT", "1.5", "-3", "", "Thu, 31 Feb 2026 12:00:00 GMT"])
def test_retry_after_junk_logs_one_warning_with_the_wait_instead(header, caplog):
    with caplog.at_level(logging.WARNING, logger=retry_after.__name__):
        wait = retry_after.parse(header, now=1768478400.0, fallback=3.0)
    assert wait == (3.0, "fallback", header)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.name == retry_after.__name__
    assert record.getMessage() == (f"Retry-After header {header!r} is not a valid Retry-After "
                                   "(delay-seconds or an HTTP-date in GMT); waiting 3 s instead")


@pytest.mark.exercise("4.3")
def test_retry_after_missing_header_falls_back_quietly_and_valid_ones_log_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger=retry_after.__name__):
        assert retry_after.parse(None, fallback=3.0) == (3.0, "fallback", None)
        retry_after.parse("5")
        retry_after.parse("Sun, 06 Nov 1994 08:49:37 GMT")
    assert caplog.records == []


@pytest.mark.exercise("4.3")
def test_rate_limited_pickles_round_trip_so_celery_needs_no_wrapper():
    from celery.utils.serialization import get_pickleable_exception

    wait = retry_after.parse("7")
    error = client.RateLimited(wait, "10/60s")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is client.RateLimited and isinstance(copy.wait, retry_after.RetryAfter)
    assert (copy.wait, copy.limit, str(copy)) == (wait, "10/60s", str(error))
    assert copy.args == error.args
    assert get_pickleable_exception(error) is error


@pytest.mark.exercise("4.2")
def test_a_pause_holds_every_caller_for_at_least_its_length_and_is_never_shortened(redis, monkeypatch):
    # Exercise 4.2 alone: the limiter's script keeps its prologue (which honours the pause) and lets every
    # other request go, so the callers' waits below are the pause's. The whole GCRA is the next test's.
    monkeypatch.setattr(limiter, "_GCRA", Script(lambda: limiter._PROLOGUE + "return 0"))
    limiter.configure(redis, limiter.Limit(50, 10), jitter=0)
    gates = [limiter.GlobalLimiter(redis) for _ in range(3)]
    k = keys.ApiKeys()
    # Paused until now + 1 s, both on the one script's clock (abs: float rounding of ms since 1970, not time).
    assert pause.pause(redis, 1.0, "429") == pytest.approx(1.0, abs=0.002)
    until = float(redis.get(k.pause))                     # ms on Redis's clock
    # The bucket restarts empty: at 50/s (20 ms) and burst 10, one request goes at `until`, then one per 20 ms.
    empty = until + 20 * (10 - 1)
    assert float(redis.get(k.state) or 0) == pytest.approx(empty, abs=0.002), \
        f"after a 1 s pause at 50/s, burst 10, the TAT lets exactly one request go when it ends: " \
        f"{empty:.3f} (until + 9 intervals) expected, got {redis.get(k.state)}"

    def left(call):
        """call()'s answer, and the ms left of the pause on Redis's clock just before and just after it."""
        before = redis_now(redis) * 1000
        answer = call()
        return answer, until - redis_now(redis) * 1000, until - before

    paused, low, high = left(lambda: pause.pause(redis, 0.2, "a shorter one"))
    assert float(redis.get(k.pause)) == until, "never shortened"
    assert float(redis.get(k.state)) == pytest.approx(empty, abs=0.002), "nor the TAT moved earlier"
    assert low <= paused * 1000 <= high + 1, "it answers what is left of the longer pause"
    for gate in gates:
        wait, low, high = left(gate.check)
        assert 0 < wait and low <= wait <= high + 1, f"every caller waits the pause out: {wait} ms"
    still, low, high = left(lambda: pause.paused_for(redis))
    assert low - 1 <= still * 1000 <= high + 1
    gates[0].acquire(timeout=5)
    assert redis_now(redis) * 1000 >= until, "no slot before the pause ends"
    assert [p["why"] for p in pause.history(redis)] == ["429", "a shorter one"]


@pytest.mark.exercises("4.1", "4.2")
def test_after_a_pause_the_limiter_restarts_empty_one_request_then_one_per_interval(redis):
    limiter.configure(redis, limiter.Limit(5, 5), jitter=0)     # a slot every 200 ms, bursts of 5
    gate = limiter.GlobalLimiter(redis)
    pause.pause(redis, 0.3)
    gate.acquire(timeout=5)                                      # the first request after the pause
    assert gate.check() > 100, "no burst into the API's empty bucket: the next slot is an interval away"


# ---------------------------------------------------------------- retries and dead letters

def test_backoff_is_full_jitter_under_a_capped_exponential():
    assert [retries.backoff(n, base=0.5, cap=8, rng=lambda: 0.999999) for n in (1, 2, 3, 4, 5, 6)] == \
        pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 8.0], abs=1e-4)
    assert retries.backoff(3, rng=lambda: 0.0) == 0.0, "full jitter: anywhere from zero"
    draws = [retries.backoff(4) for _ in range(500)]
    assert 0 <= min(draws) and max(draws) < retries.BASE * 8 and len(set(draws)) > 400


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code, response.reason = status, "Reason"
    return requests.HTTPError(f"{status}", response=response)


@pytest.mark.parametrize("error, reason, retryable", [
    (http_error(503), "5xx", True),
    (requests.ReadTimeout("read timed out"), "timeout", True),
    (requests.ConnectionError("refused"), "unreachable", True),
    (requests.exceptions.JSONDecodeError("Expecting value", "{\"date\": \"2026", 12), "malformed", False),
    (KeyError("readings"), "malformed", False),
    (http_error(404), "http-4xx", False),
])
def test_failures_are_classified_into_retry_or_give_up(error, reason, retryable):
    failure = retries.classify(error)
    assert (failure.reason, failure.retryable) == (reason, retryable)


def test_dead_letters_take_a_batch_out_of_flight_with_its_reason_and_can_be_replayed(redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002", "WX00003"])
    batch = leases.lease(redis, k, 2, 30, "task-a:0")
    assert retries.count_delivery(redis, k, batch, "task-a:0").held == batch
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1)
    assert dead_letters.bury(redis, k, batch, retries.Failure("5xx", "HTTP 503", True), 1, "task-b:0") == [], \
        "a message that does not hold the lease buries nothing"
    dead_letters.bury(redis, k, batch, retries.Failure("5xx", "HTTP 503", True), 1, "task-a:0")
    buried = dead_letters.dead_letters(redis, k)
    assert sorted(buried) == batch and {d["reason"] for d in buried.values()} == {"5xx"}
    assert not redis.exists(k.in_flight, k.holders) and set(stages.members(redis, k.pending)) == {"WX00003"}
    assert dead_letters.replay(redis, k) == batch
    assert set(stages.members(redis, k.pending)) == {"WX00001", "WX00002", "WX00003"} and not redis.exists(k.attempts)
    assert not redis.exists(k.dead_letters)


def test_the_outcome_of_a_day_whose_every_station_was_dead_lettered_counts_them_dead(redis, tmp_path):
    k = keys.for_day(DAY)
    stages.add(redis, k.stations, ["WX00001", "WX00002"])
    redis.hset(k.dead_letters, mapping=dict.fromkeys(["WX00001", "WX00002"], json.dumps({"reason": "5xx"})))
    assert pipeline.outcome(redis, DAY, str(tmp_path / "none.sqlite3")) == \
        {"stations": 2, "done": 0, "missing": 0, "wrong": 0, "dead": 2}, "no database yet: nothing persisted"


class FakeTask:
    """Just enough of a bound task to call the fetch body in the test process: message `task_id`, retry 0."""

    def __init__(self, task_id: str = "fake-task", retries: int = 0):
        self.request = SimpleNamespace(headers={}, id=task_id, retries=retries)

    def retry(self, countdown=None, exc=None):
        return Retry(exc=exc, when=countdown)


def deliver(r, task: FakeTask, batch: list[str], **options) -> dict:
    """One delivery of `task`'s message as a worker makes it: counted on receipt (deliveries.py), then the body."""
    from ch04_rate_limits import fetch
    retries.count_delivery(r, keys.for_day(DAY), batch, leases.token_of(task.request))
    return fetch.fetch(task, batch, DAY, **options)


def test_an_unexpected_error_in_the_fetch_step_is_raised_counted_and_finally_dead_lettered(redis, monkeypatch):
    from ch04_rate_limits import fetch
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002"])
    batch = leases.lease(redis, k, 2, 30, "fake-task:0")

    def broken(*args, **kwargs):
        raise TypeError("a bug in the client")
    monkeypatch.setattr(fetch.client, "fetch", broken)
    for attempt in range(1, retries.MAX_ATTEMPTS + 1):
        with pytest.raises(TypeError, match="a bug"):   # loud: task_failure, the loop's error log
            deliver(redis, FakeTask(), batch, global_limit=False)
        if attempt < retries.MAX_ATTEMPTS:
            assert retries.attempts(redis, k) == dict.fromkeys(batch, attempt)
            assert sorted(leases.in_flight(redis, k)) == batch, "still leased: the reaper hands them back"
            assert not redis.exists(k.dead_letters)
    buried = dead_letters.dead_letters(redis, k)
    assert sorted(buried) == batch and {d["reason"] for d in buried.values()} == {"unexpected"}
    assert all(d["detail"] == "TypeError: a bug in the client" and d["attempts"] == retries.MAX_ATTEMPTS
               for d in buried.values())
    assert not redis.exists(k.in_flight) and not redis.exists(k.pending), "none stuck in flight or cycling"
    assert deliver(redis, FakeTask(), batch, global_limit=False) == {"day": DAY, "done": 0, "dead": 0}


@pytest.mark.exercises("4.2")   # a 5xx or a time limit is counted by the circuit, which pauses with 4.2
def test_giving_up_buries_only_stations_still_ours_and_counts_attempts_per_station(redis):
    from ch04_rate_limits import fetch
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002", "WX00003"])
    batch = leases.lease(redis, k, 3, 30, "fake-task:0")
    retries.count_delivery(redis, k, batch, "fake-task:0")
    # Our lease expired; another holder leased WX00001 again and settled it before we give up.
    redis.hset(k.holders, "WX00001", "other:0")
    assert fetch.settle(redis, k, ["WX00001"], {"WX00001": [1.0] * 24}, "other:0") == 1
    assert fetch.retry_or_give_up(FakeTask(), redis, k, batch, "fake-task:0", http_error(404)) == \
        {"day": DAY, "done": 0, "dead": 2, "reason": "http-4xx"}
    assert sorted(dead_letters.dead_letters(redis, k)) == ["WX00002", "WX00003"]
    assert set(stages.members(redis, k.fetched)) == {"WX00001"}, "done once, never also dead-lettered"

    redis.delete(k.dead_letters, k.attempts)
    stages.add(redis, k.pending, ["WX00004", "WX00005"])
    batch = leases.lease(redis, k, 2, 30, "second-task:0")
    redis.hset(k.attempts, "WX00005", retries.MAX_ATTEMPTS - 1)   # it joined this batch with attempts behind it
    retries.count_delivery(redis, k, batch, "second-task:0")
    with pytest.raises(Retry):
        fetch.retry_or_give_up(FakeTask("second-task"), redis, k, batch, "second-task:0", http_error(503))
    assert list(dead_letters.dead_letters(redis, k)) == ["WX00005"]
    assert list(leases.in_flight(redis, k)) == ["WX00004"] and retries.attempts(redis, k)["WX00004"] == 1
    assert redis.hget(k.holders, "WX00004") == "second-task:1", "the lease went to the retry's message"


def test_a_failure_cause_is_written_only_for_stations_its_message_still_holds(redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002"])
    leases.lease(redis, k, 2, 30, "old:0")
    redis.hset(k.causes, "WX00002", retries.WORKER_LOST.cause(by="new:0"))
    redis.hset(k.holders, "WX00002", "new:0")   # our lease expired: another message holds it, its attempt under way
    failure = retries.Failure("5xx", "HTTP 503", True)
    assert retries.record_cause(redis, k, ["WX00001", "WX00002"], failure, "old:0") == 1
    assert json.loads(redis.hget(k.causes, "WX00001"))["reason"] == "5xx"
    assert json.loads(redis.hget(k.causes, "WX00002")) == {**json.loads(retries.WORKER_LOST.cause()), "by": "new:0"}, \
        "the other holder's cause stands"


def test_every_delivery_counts_so_a_batch_that_never_says_it_failed_is_dead_lettered_with_the_cause(redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002"])
    batch = leases.lease(redis, k, 2, 30, "killer:0")
    # A delivery whose process dies says nothing: its receipt counted, its cause "worker lost".
    assert retries.count_delivery(redis, k, batch, "killer:0") == (batch, [], [], False)
    # Delivered again, the same message gives its two stations back, to be leased in halves, and holds nothing.
    assert retries.count_delivery(redis, k, batch, "killer:0") == ([], [], batch, True)
    assert set(stages.members(redis, k.pending)) == set(batch) and not redis.exists(k.in_flight, k.holders)
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1), "the attempts stay with the stations"
    assert leases.lease(redis, k, 2, 30, "half:0") == ["WX00001"], "halved: the first came back unsettled"
    # Alone, it counts each delivery, and after MAX_ATTEMPTS is dead-lettered with the cause.
    for n in range(2, retries.MAX_ATTEMPTS + 1):
        assert retries.count_delivery(redis, k, ["WX00001"], "half:0") == (["WX00001"], [], [], False)
    assert retries.count_delivery(redis, k, ["WX00001"], "half:0") == ([], ["WX00001"], [], True)
    buried = dead_letters.dead_letters(redis, k)
    assert {s: (d["reason"], d["attempts"]) for s, d in buried.items()} == \
        {"WX00001": ("worker lost", retries.MAX_ATTEMPTS)}
    assert not redis.exists(k.in_flight, k.holders) and redis.hkeys(k.causes) == ["WX00002"], "WX00002 waits"
    # The body of a delivery fetches only what its message still holds, and counts nothing.
    assert retries.start_attempt(redis, k, ["WX00001"], "half:0") == []
    assert retries.attempts(redis, k) == {"WX00002": 1}


def test_a_receipt_sent_twice_counts_once_and_answers_the_same(redis):
    """redis-py sends a script again after a lost reply: the receipt's id makes the second run a no-op."""
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002", "WX00003"])
    batch = leases.lease(redis, k, 3, 30, "t:0")
    first = retries.count_delivery(redis, k, batch, "t:0", receipt="r1")
    assert retries.count_delivery(redis, k, batch, "t:0", receipt="r1") == first == (batch, [], [], False)
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1), "counted once"
    # The next receipt gives the batch back (its last delivery died); sent twice, the same answer, not "nothing".
    given_back = retries.count_delivery(redis, k, batch, "t:0", receipt="r2")
    assert retries.count_delivery(redis, k, batch, "t:0", receipt="r2") == given_back == ([], [], batch, True)
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1)


def test_a_message_received_holding_nothing_is_dropped_the_second_time_never_while_a_retry_holds_its_stations(
        redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002"])
    assert leases.lease(redis, k, 2, 30, "other:0") == ["WX00001", "WX00002"]
    # A stale message (its stations leased to another): the first time it runs, and finds nothing;
    # back again (it died), it is dropped.
    assert retries.count_delivery(redis, k, ["WX00001"], "stale:0") == ([], [], [], False)
    assert retries.count_delivery(redis, k, ["WX00001"], "stale:0") == ([], [], [], True)
    # A message whose delivery handed its stations to its retry (same task id) and died before its
    # acknowledgement: never dropped while the retry holds them (dropping goes by task id, see deliveries.py).
    assert leases.hand_over(redis, k, ["WX00001", "WX00002"], "other:0", "other:1", 30) == 2
    for _ in range(3):
        assert retries.count_delivery(redis, k, ["WX00001", "WX00002"], "other:0") == ([], [], [], False)
    assert retries.attempts(redis, k) == {}, "a message that holds nothing counts nothing"


def received(task_id: str, batch: list[str], task=None, retries_: int = 0, **headers) -> SimpleNamespace:
    """Just enough of a worker's Request, as task_received hands it to its handlers in the main process."""
    return SimpleNamespace(id=task_id, type=(task or pipeline.LOOP.fetch.task).name, args=[batch, DAY],
                           request_dict={"retries": retries_, **headers})


def test_a_delivery_is_counted_on_receipt_and_one_left_holding_nothing_is_dropped_its_chain_continued(
        redis, monkeypatch, use):
    from celery.app.task import Task
    from celery.worker import state as worker_state
    from ch03_signals import lock
    from ch03_signals.messages import CHAIN, DAY as DAY_HEADER, NAME, OWNER, TURN
    from ch04_rate_limits import deliveries, handlers  # noqa: F401 (handlers: connected, as in a worker)
    sent = []
    monkeypatch.setattr(Task, "apply_async", lambda self, args=None, kwargs=None, task_id=None, headers=None, **_:
                        sent.append((self.name, list(args), headers)))
    k, lk = keys.for_day(DAY), pipeline.LOOP.keys(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002", "WX00003"])
    assert lock.acquire(redis, lk.lock, "owner", 10_000)
    batch = leases.lease(redis, k, 2, 30, leases.token("m1"))
    loop_headers = {NAME: pipeline.LOOP.name, DAY_HEADER: DAY, OWNER: "owner", CHAIN: "0", TURN: 0}
    request = received("m1", batch, **loop_headers)

    deliveries.on_received(sender=None, request=request)
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1), "counted on receipt"
    assert not sent and "m1" not in worker_state.revoked, "it holds its batch: it runs"

    deliveries.on_received(sender=None, request=request)   # its pool process died; delivered again
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1) and "m1:0" not in redis.hvals(k.holders), \
        "given back"
    assert "m1" in worker_state.revoked, "dropped: the worker discards it before a pool process sees it"
    assert [(name, args[0], headers[CHAIN], headers[TURN]) for name, args, headers in sent] == \
        [(pipeline.LOOP.fetch.task.name, ["WX00001", "WX00002"], "0", 1)], "its chain goes on: halved"
    deliveries.on_revoked(sender=None, request=SimpleNamespace(id="m1"))   # the worker discarded it
    assert "m1" not in worker_state.revoked, "a later message of that id is not discarded"

    # A batch sent by hand (no loop headers) counts the same; another task's message is not ours.
    by_hand = leases.lease(redis, k, 1, 30, leases.token("m2"))
    deliveries.on_received(sender=None, request=received("m2", by_hand))
    deliveries.on_received(sender=None, request=received("m2", by_hand, task=pipeline.tasks.transform_batch))
    assert retries.attempts(redis, k)[by_hand[0]] == 1


def test_a_stale_message_after_its_stations_were_leased_again_calls_no_api_and_touches_nothing(
        redis, fake_api, use):
    from ch04_rate_limits import fetch
    use(API_RATE=50, API_BURST=50)
    api = fake_api()
    k = keys.for_day(DAY)
    ids = answer_key.station_ids(3)
    stages.add(redis, k.pending, ids)
    batch = leases.lease(redis, k, 3, 0.05, "first:0")
    retries.count_delivery(redis, k, batch, "first:0")
    time.sleep(0.1)
    assert sorted(leases.reap(redis, k)) == ids, "the first holder's lease expired"
    assert leases.lease(redis, k, 6, 30, "second:0") == ids, "6 halved: they came back unsettled"
    deadlines = redis.zrange(k.in_flight, 0, -1, withscores=True)
    attempts = retries.attempts(redis, k)

    # The first message comes back (a redelivery after the visibility timeout, a retry's original).
    assert deliver(redis, FakeTask("first"), batch, global_limit=False) == {"day": DAY, "done": 0, "dead": 0}

    assert api.stats()["fetches"] == {}, "no second API call"
    assert redis.zrange(k.in_flight, 0, -1, withscores=True) == deadlines, "the new holder's lease untouched"
    assert retries.attempts(redis, k) == attempts == dict.fromkeys(ids, 1), "the stale delivery counts nothing"
    assert redis.hgetall(k.holders) == dict.fromkeys(ids, "second:0")
    # The holder itself fetches and settles.
    assert fetch.fetch(FakeTask("second"), ids, DAY, global_limit=False) == {"day": DAY, "done": 3, "dead": 0}
    assert set(stages.members(redis, k.fetched)) == set(ids) and not redis.exists(k.attempts, k.holders, k.in_flight)


@pytest.mark.exercises("4.2")   # a 5xx or a time limit is counted by the circuit, which pauses with 4.2
def test_our_own_faults_are_retried_counted_and_dead_lettered_with_the_true_reason(redis, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded
    from ch04_rate_limits import fetch
    k = keys.for_day(DAY)
    for fault, reason in ((limiter.LimiterTimeout("no slot within 180 s"), "limiter timeout"),
                          (SoftTimeLimitExceeded(), "time limit")):
        redis.flushdb()
        stages.add(redis, k.pending, ["WX00001", "WX00002"])

        def failing(*args, **kwargs):
            raise fault
        monkeypatch.setattr(fetch.client, "fetch", failing)
        task_id = f"ours-{reason}"
        batch = leases.lease(redis, k, 2, 30, leases.token(task_id))
        for attempt in range(retries.MAX_ATTEMPTS - 1):
            with pytest.raises(Retry):   # retried with backoff within the lease, like a 5xx
                deliver(redis, FakeTask(task_id, attempt), batch, global_limit=False)
            assert not redis.exists(k.dead_letters)
            assert redis.hgetall(k.holders) == dict.fromkeys(batch, leases.token(task_id, attempt + 1))
        outcome = deliver(redis, FakeTask(task_id, retries.MAX_ATTEMPTS - 1), batch, global_limit=False)
        assert outcome == {"day": DAY, "done": 0, "dead": 2, "reason": reason}
        buried = dead_letters.dead_letters(redis, k)
        assert {d["reason"] for d in buried.values()} == {reason}
        assert {d["attempts"] for d in buried.values()} == {retries.MAX_ATTEMPTS}


def test_a_retry_countdown_holds_the_loops_lock_and_hands_the_lease_to_the_retry(redis, monkeypatch):
    from ch03_signals import lock
    from ch04_rate_limits import fetch
    monkeypatch.setenv("CH03_LOCK_TTL", "2")
    k, lock_key = keys.for_day(DAY), pipeline.LOOP.keys(DAY).lock
    assert lock.acquire(redis, lock_key, "owner", 2000)
    stages.add(redis, k.pending, ["WX00001"])
    batch = leases.lease(redis, k, 1, 30, "waits:0")
    task = FakeTask("waits")
    task.request.headers = {"loop_name": pipeline.LOOP.name, "loop_owner": "owner"}
    retry = fetch.retry_later(task, redis, k, batch, "waits:0", 100.0, RuntimeError("429"), uncount=True)
    assert isinstance(retry, Retry) and retry.when == 100.0
    assert redis.pttl(lock_key) > 100_000, "the lock outlives the countdown: the watchdog sees a live loop"
    assert redis.hget(k.holders, "WX00001") == "waits:1" and leases.in_flight(redis, k)["WX00001"] > 100
    assert not lock.hold(redis, lock_key, "owner", 1000) or redis.pttl(lock_key) > 100_000, "never shortened"


def test_no_limit_configured_stops_the_loop_with_what_to_do_and_buries_nothing(redis):
    from ch04_rate_limits import fetch
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, ["WX00001", "WX00002"])
    batch = leases.lease(redis, k, 2, 30, "nolimit:0")
    task = FakeTask("nolimit")
    task.request.headers = {"loop_name": pipeline.LOOP.name, "loop_owner": "owner"}
    with pytest.raises(limiter.NoLimitError, match=r"the loop stopped: .*configure"):
        fetch.fetch(task, batch, DAY, global_limit=True)
    assert set(stages.members(redis, k.pending)) == set(batch) and not redis.exists(k.in_flight, k.holders)
    assert not redis.exists(k.dead_letters, k.attempts, k.causes), "not counted: the batch did nothing wrong"
    assert "configure" in pipeline.LOOP.status(redis, DAY)["stop_switch"]


def test_every_key_a_script_touches_together_lies_in_one_redis_cluster_slot():
    from redis.crc import key_slot
    k, lk = keys.for_day(DAY), pipeline.LOOP.keys(DAY)
    day_keys = [k.pending, k.fetched, k.transformed, k.persisted, k.in_flight, k.holders, k.attempts, k.causes,
                k.dead_letters, k.summaries, k.raw("WX00001"), k.delivery("d"),
                lk.lock, lk.turns, lk.kicked, lk.stop, lk.finished, lk.failures, lk.poison]
    assert len({key_slot(key.encode()) for key in day_keys}) == 1, "one day: one slot (the {day} hash tag)"
    assert len({key_slot(key.encode()) for key in keys.ApiKeys().all()}) == 1, "one API: one slot"
    assert key_slot(keys.for_day("2026-01-16").pending.encode()) != key_slot(k.pending.encode()), \
        "days spread over the cluster"


# ---------------------------------------------------------------- leases and the reaper

@pytest.mark.exercise("4.4")
def test_a_lease_takes_the_smallest_pending_ids_and_holds_them_in_flight_until_its_deadline(redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, [f"WX{i:05d}" for i in (7, 3, 9, 1, 5)])
    assert leases.lease(redis, k, 3, 30, "t:0") == ["WX00001", "WX00003", "WX00005"]
    assert set(stages.members(redis, k.pending)) == {"WX00007", "WX00009"}
    assert all(29 < left <= 30 for left in leases.in_flight(redis, k).values())
    assert leases.extend(redis, k, ["WX00001", "WX00009"], 60, "t:0") == 1, "only a station in flight is extended"
    assert leases.extend(redis, k, ["WX00003"], 90, "other:0") == 0, "only by its holder"
    assert leases.in_flight(redis, k)["WX00001"] > 59
    assert leases.reap(redis, k) == [], "nothing expired yet"


@pytest.mark.exercise("4.4")
def test_the_reaper_brings_back_only_expired_leases_once_even_with_reapers_racing(redis):
    k = keys.for_day(DAY)
    stages.add(redis, k.pending, [f"WX{i:05d}" for i in range(40)])
    short = leases.lease(redis, k, 30, 0.2, "short:0")
    long = leases.lease(redis, k, 10, 60, "long:0")
    time.sleep(0.3)
    brought_back: list[list[str]] = []
    errors: list[BaseException] = []

    def reap() -> None:
        try:
            brought_back.append(leases.reap(redis, k))
        except BaseException as error:   # re-raised below, in the test's own thread
            errors.append(error)

    racers = [threading.Thread(target=reap) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    if errors:
        raise errors[0]
    everything = [station for part in brought_back for station in part]
    assert sorted(everything) == short, "each expired station brought back exactly once"
    assert set(stages.members(redis, k.pending)) == set(short)
    assert sorted(redis.zrange(k.in_flight, 0, -1)) == long
    kept = sorted(set(redis.hgetall(k.holders)) & set(short))
    assert not kept, f"a reaped lease has no holder any more: {kept[:3]} ({len(kept)} in all) still have one"
    assert redis.hgetall(k.holders) == dict.fromkeys(long, "long:0"), "the live leases keep their holder"


def test_a_delivery_that_starts_holds_its_lease_for_the_request_from_then_on(redis):
    k = keys.for_day(DAY)
    ids = [f"WX{i:05d}" for i in range(4)]
    stages.add(redis, k.pending, ids)
    batch = leases.lease(redis, k, 2, 1, "slow:0")
    other = leases.lease(redis, k, 2, 1, "other:0")
    assert retries.start_attempt(redis, k, batch, "slow:0", lease=20) == batch
    left = leases.in_flight(redis, k)
    assert all(19.5 < left[station] <= 20 for station in batch), f"20 s from the start: {left}"
    assert all(left[station] <= 1 for station in other), "another holder's lease untouched"
    assert retries.start_attempt(redis, k, other, "other:0") == other
    assert all(leases.in_flight(redis, k)[station] <= 1 for station in other), "no lease given: unchanged"
    assert retries.start_attempt(redis, k, batch, "stale:0", lease=20) == [], "a stale message holds nothing"

@pytest.mark.exercise("4.4")
def test_a_lease_brings_back_expired_leases_first_and_reaps_only_when_one_has_expired(redis, monkeypatch):
    k = keys.for_day(DAY)
    ids = [f"WX{i:05d}" for i in range(10)]
    stages.add(redis, k.pending, ids)
    reaped: list[list[str]] = []
    reap = leases.reap
    monkeypatch.setattr(leases, "reap", lambda r, k: reaped.append(reap(r, k)) or reaped[-1])
    dead = leases.lease(redis, k, 2, 0.05, "dead:0")          # its worker dies: never settled
    assert leases.lease(redis, k, 2, 30, "alive:0") == ids[2:4] and reaped == [], "nothing expired: no reaper"
    time.sleep(0.1)
    # The next lease finds the expired one in flight: the reaper runs first, so what came back goes first
    # (a whole batch: no delivery of it started, so no attempt was counted and nothing is halved).
    assert leases.lease(redis, k, 2, 30, "next:0") == dead
    assert reaped == [dead], "reaped once, before the lease"
    assert redis.hgetall(k.holders) == {**dict.fromkeys(ids[2:4], "alive:0"), **dict.fromkeys(dead, "next:0")}
    assert leases.lease(redis, k, 2, 30, "after:0") == ids[4:6] and len(reaped) == 1


# ---------------------------------------------------------------- crash-safe configuration

def test_the_app_is_crash_safe_and_its_waits_stay_well_below_the_visibility_timeout(settings, redis_server):
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    figures = safety.check(app, settings.request_timeout)
    assert figures["longest_unacked"] * safety.MARGIN <= visibility
    assert retries.CAP * 100 <= visibility and retry_after.LONGEST * 10 <= visibility

    from workshop.celery_app import make_app
    with pytest.raises(safety.ConfigurationError, match="visibility_timeout=600"):
        safety.check(make_app("short", **safety.CRASH_SAFE, broker_transport_options={"visibility_timeout": 600}),
                      settings.request_timeout)
    with pytest.raises(safety.ConfigurationError, match="task_reject_on_worker_lost"):
        safety.check(make_app("unsafe", task_acks_late=True, worker_prefetch_multiplier=1), 2.0)


def test_prefetch_1_does_not_bound_countdown_messages_a_c1_worker_holds_them_all_unacked_and_loses_none(
        redis, worker_processes):
    """safety.py's claim, checked on Celery itself: for each message with a countdown it takes, the worker
    raises its prefetch count by one, so one `-c 1` worker with multiplier 1 and acks_late holds all ten, in
    kombu's `unacked` hash, none left in the queue; a warm stop puts every one back in the queue."""
    workers = worker_processes("ch04_rate_limits.app", 1, pool="prefork", concurrency=1)
    for _ in range(10):   # the watchdog: harmless if it ran, and it does not run within 5 minutes
        app.send_task("ch04_rate_limits.watchdog", countdown=300)
    deadline = time.monotonic() + 30
    while not (redis.hlen("unacked") == 10 and redis.llen("celery") == 0):
        assert time.monotonic() < deadline, f"unacked {redis.hlen('unacked')}, queued {redis.llen('celery')}"
        time.sleep(0.1)
    workers.stop()
    assert redis.llen("celery") == 10 and redis.hlen("unacked") == 0, "back in the queue, none lost"


# ---------------------------------------------------------------- the whole loop, two worker processes

N = 60          # stations per run
BATCH = 5       # the API's maximum batch here: 12 requests for 60 stations
TIMEOUT = 90.0  # seconds a run may take before a test gives up


@pytest.fixture
def use(monkeypatch, tmp_path):
    """Settings for this test and every worker it starts: use(API_RATE=10, ...). A fresh SQLite file."""
    def set_env(**values) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name.upper(), str(value))
    set_env(CH02_DB=tmp_path / "summaries.sqlite3", API_MAX_BATCH=BATCH, API_STATIONS=N, CH04_LEASE=15,
            API_GLITCH_RATE=0.05)
    return set_env


def two_workers(worker_processes):
    return worker_processes(APP, 2, pool="prefork", concurrency=1)


def exercise_missing(r) -> str | None:
    """A task that stopped at an exercise, from the error log: fail at once rather than time out."""
    for entry in error_log.entries(r, stream=pipeline.ERRORS):
        if entry["exception"].startswith("NotImplementedError"):
            return entry["exception"]
    return None


def run_day(r, timeout: float = TIMEOUT, during=None) -> dict:
    """Discover, kick, wait (calling `during()` meanwhile); the outcome against the answer key."""
    started = time.monotonic()
    pipeline.ch03_pipeline.discover(DAY)
    pipeline.kick(r, DAY)

    def stop_waiting() -> bool:
        if during is not None:
            during()
        return exercise_missing(r) is not None

    finished = pipeline.LOOP.wait(r, DAY, timeout, until=stop_waiting)
    missing = exercise_missing(r)
    assert missing is None, f"a task stopped at an exercise: {missing}"
    assert finished, f"the loop did not finish in {timeout:.0f} s: {pipeline.LOOP.status(r, DAY)}"
    outcome = pipeline.outcome(r, DAY, settings=settings_mod.load())
    print(f"\n{outcome} in {time.monotonic() - started:.1f} s, status {pipeline.LOOP.status(r, DAY)}")
    return outcome


def served(stats: dict) -> Counter:
    """Per station: readings the API served and the client received (timed-out slow answers excluded)."""
    timed_out = Counter(s for entry in stats["fault_log"] if entry["kind"] == "slow" for s in entry["stations"])
    return Counter({station: n - timed_out[station] for station, n in stats["fetches"].items()})


@all_exercises
def test_a_clean_day_is_complete_and_correct_with_no_429(redis, fake_api, worker_processes, use):
    use(API_RATE=20, API_BURST=10)
    api = fake_api()
    two_workers(worker_processes)

    outcome = run_day(redis)

    assert outcome == {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}
    stats = api.stats()
    assert stats["rate_limited"] == 0, f"the global limiter kept every request within the limit: {stats['by_status']}"
    assert stats["fetches"] == {s: 1 for s in answer_key.station_ids(N)}, "each station fetched once"
    assert stats["requests"] == 1 + N // BATCH, "one listing, then batches as large as the API takes"
    # No idle tail: transform is sent by the end of the last fetch (the lead's, or a helper's waking the
    # parked lead), not by the lead's safety tick.
    rows = history.entries(redis, DAY, stream=pipeline.HISTORY)
    fetches = {e["task_id"] for e in rows if e["task"] == "fetch_batch"}
    first_transform = min((e for e in rows if e["task"] == "transform_batch"), key=lambda e: e["started"])
    assert first_transform["parent_id"] in fetches, "transform followed the last fetch at once"
    # No stall: under lost replies too (make test-faults), a turn's repeat never ends its chain as "lost", so no
    # batch waits for the lock's TTL and the watchdog (there is no beat here) between two others.
    starts = sorted(e["started"] for e in rows)
    gap = max((b - a for a, b in zip(starts, starts[1:])), default=0.0)
    assert gap < ch03_loop.lock_ttl(), f"a {gap:.1f} s gap between two batches: a chain stopped and waited"
    persisted = [e["first"] for e in rows if e["task"] == "persist_batch" and e["state"] == "SUCCESS"]
    assert len(persisted) == len(set(persisted)), "no batch persisted twice"


# The fault profile of the issue: 10% 5xx, 5% slow past the client's timeout, 2% malformed bodies.
FAULTS = {"error_rate": 0.10, "slow_rate": 0.05, "malformed_rate": 0.02}
REASON = {"error": "5xx", "slow": "timeout", "malformed": "malformed"}


def predicted_dead_letters(seed: int) -> dict[str, str]:
    """station -> reason, from the API's own fault function: batches of the smallest ids, each retried whole."""
    config = ApiConfig(seed=seed, stations=N, max_batch=BATCH, **FAULTS)
    dead = {}
    for batch in (answer_key.station_ids(N)[i:i + BATCH] for i in range(0, N, BATCH)):
        for attempt in range(retries.MAX_ATTEMPTS):
            fault, _ = draw_fault(config, (tuple(batch), DAY), attempt)
            if fault == "ok":
                break
            if fault == "malformed" or attempt == retries.MAX_ATTEMPTS - 1:
                dead.update({station: REASON[fault] for station in batch})
                break
    return dead


def batches_failing_for_the_api(seed: int) -> set[str]:
    """The batches (by first station) whose requests fail for a reason the circuit breaker counts (5xx, timeout)."""
    config = ApiConfig(seed=seed, stations=N, max_batch=BATCH, **FAULTS)
    failing = set()
    for batch in (answer_key.station_ids(N)[i:i + BATCH] for i in range(0, N, BATCH)):
        for attempt in range(retries.MAX_ATTEMPTS):
            fault, _ = draw_fault(config, (tuple(batch), DAY), attempt)
            if fault in ("ok", "malformed"):
                break
            failing.add(batch[0])
    return failing


def a_seed_with_both_kinds_of_dead_letter() -> int:
    """The first seed whose faults dead-letter a batch for a malformed body and another after its retries,
    with that one batch the only one whose requests fail for the API's bad moment: failures that follow one
    batch are not the API down, so the circuit breaker stays closed and every attempt counts, as predicted.
    (Faults drawn over several batches in a row would, rightly, open it: its own tests show that.)"""
    for seed in range(5000):
        reasons = set(predicted_dead_letters(seed).values())
        if "malformed" in reasons and reasons & {"5xx", "timeout"} and len(batches_failing_for_the_api(seed)) == 1:
            return seed
    raise AssertionError("no seed below 5000 gives both kinds of dead letter")


@all_exercises
def test_a_faulty_day_every_station_done_once_or_dead_lettered_with_the_apis_reason(
        redis, fake_api, worker_processes, use):
    seed = a_seed_with_both_kinds_of_dead_letter()
    use(API_RATE=20, API_BURST=10, SEED=seed, REQUEST_TIMEOUT=2, API_SLOW_SECONDS=3)
    api = fake_api(**FAULTS)
    two_workers(worker_processes)

    outcome = run_day(redis)

    stats = api.stats()
    buried = dead_letters.dead_letters(redis, keys.for_day(DAY))
    print(f"seed {seed}: faults {stats['faults']}, dead letters "
          f"{dict(Counter(d['reason'] for d in buried.values()))}")
    assert outcome["done"] + outcome["dead"] == N and outcome["missing"] == outcome["wrong"] == 0
    assert {s: d["reason"] for s, d in buried.items()} == predicted_dead_letters(seed)
    # Each dead letter's reason is the fault the API recorded for its station's last request.
    last_fault = {s: entry["kind"] for entry in stats["fault_log"] for s in entry["stations"]}
    assert {s: d["reason"] for s, d in buried.items()} == {s: REASON[last_fault[s]] for s in buried}
    # None done twice: each done station was served exactly once, each dead letter never.
    delivered = served(stats)
    assert {s for s in answer_key.station_ids(N) if delivered[s] == 1} == set(answer_key.station_ids(N)) - set(buried)
    assert not any(delivered[s] for s in buried)
    assert stats["rate_limited"] == 0
    assert pause.history(redis) == [], "a batch failing again and again is not the API down: the circuit stayed closed"


def mid_batch(r, workers) -> tuple[int, int] | None:
    """(worker index, pool process PID) of a worker in the middle of a fetch batch (leased, not settled)."""
    control = workers._control_app(os.environ["REDIS_URL"])
    try:
        active = control.control.inspect(workers.names, timeout=1.0).active() or {}
    finally:
        control.close()
    for index, name in enumerate(workers.names):
        for task in active.get(name, []):
            batch = task["args"][0] if task["name"].endswith("fetch_batch") and task["args"] else []
            if batch and r.zscore(keys.for_day(DAY).in_flight, batch[0]) is not None:
                return index, task["worker_pid"]
    return None


@all_exercises
def test_a_worker_process_killed_mid_batch_loses_nothing_and_nothing_is_done_twice(
        redis, fake_api, worker_processes, use):
    # A slow limit, so a batch spends most of its time in the worker: waiting for its slot.
    use(API_RATE=2, API_BURST=2)
    api = fake_api()
    workers = two_workers(worker_processes)
    killed: list[tuple[int, int]] = []

    def kill_a_pool_process_mid_batch() -> None:
        if not killed and stages.count(redis, keys.for_day(DAY).fetched) >= BATCH:
            found = mid_batch(redis, workers)
            if found is not None:
                os.kill(found[1], signal.SIGKILL)
                killed.append(found)

    outcome = run_day(redis, during=kill_a_pool_process_mid_batch)

    assert killed, "a pool process was killed in the middle of a batch"
    index, pid = killed[0]
    assert f"pid:{pid} exited with 'signal 9 (SIGKILL)'" in workers.log(index)
    assert outcome == {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}
    fetches = api.stats()["fetches"]
    assert set(fetches) == set(answer_key.station_ids(N))
    twice = sorted(s for s, n in fetches.items() if n > 1)
    print(f"killed pool process {pid} of worker {index}; fetched twice: {twice}")
    assert len(twice) <= BATCH and all(fetches[s] == 2 for s in twice), "at most the killed batch, once more"


@all_exercises
def test_a_whole_worker_killed_mid_batch_its_leases_expire_and_the_batch_comes_back(
        redis, fake_api, worker_processes, beat_process, use):
    """SIGKILL a worker and its pool: its message stays unacknowledged for the visibility timeout (an hour);
    the lease brings its stations back in seconds, and the watchdog restarts a loop left without a chain."""
    # A lease of 8 s: far longer than a batch can wait in the queue on a loaded machine (a shorter one could
    # be reaped and leased again while its task still waits, and fetched twice), yet short enough for a test.
    use(API_RATE=2, API_BURST=2, CH04_LEASE=8, CH03_LOCK_TTL=3, BEAT_INTERVAL=1)
    api = fake_api()
    workers = two_workers(worker_processes)
    beat_process(APP, max_interval=1)
    killed: list[int] = []

    def kill_a_worker_mid_batch() -> None:
        found = None if killed or stages.count(redis, keys.for_day(DAY).fetched) < BATCH else mid_batch(redis, workers)
        if found is not None:
            os.killpg(workers.pids[found[0]], signal.SIGKILL)   # the worker and its pool: no one left to tell
            killed.append(workers.pids[found[0]])

    outcome = run_day(redis, during=kill_a_worker_mid_batch)

    assert killed
    assert outcome == {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}
    fetches = api.stats()["fetches"]
    assert set(fetches) == set(answer_key.station_ids(N))
    assert sum(n - 1 for n in fetches.values()) <= BATCH, "at most the lost batch fetched again"


@all_exercises
def test_a_429_storm_pauses_the_loop_which_then_completes_within_the_new_limit(
        redis, fake_api, worker_processes, use):
    use(API_RATE=5, API_BURST=5)
    api = fake_api()
    two_workers(worker_processes)
    requests_seen: list[tuple[float, int]] = []    # (arrival, status) of each /readings request the API answered
    handle = api.api.handle

    def recording(method, path, *args, **kwargs):
        # The time a request reached the API, as its bucket sees it, taken before the handler runs: the
        # time it finished would add however long each answer took, and bunch requests that were not.
        arrived = time.monotonic()
        response = handle(method, path, *args, **kwargs)
        if path == "/readings":
            requests_seen.append((arrived, response.status))
        return response
    api.api.handle = recording
    new_rate = 2.0

    def lower_the_limit_mid_run() -> None:
        if api.config.rate != new_rate and stages.count(redis, keys.for_day(DAY).fetched) >= BATCH:
            api.configure(rate=new_rate)

    outcome = run_day(redis, during=lower_the_limit_mid_run)

    assert outcome == {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}
    limited = [t for t, status in requests_seen if status == 429]
    assert limited, "lowering the limit mid-run made the API answer 429"
    first = min(limited)
    after = sorted(t for t, _ in requests_seen if t > first)
    pauses = pause.history(redis)
    print(f"429s: {len(limited)}, pauses {[(p['asked'], p['paused_for']) for p in pauses]}, "
          f"{len(after)} requests in the {requests_seen[-1][0] - first:.1f} s after the first 429")
    assert pauses and all(p["asked"] >= 1 for p in pauses), "the loop paused for Retry-After"
    assert len(limited) <= 2, "only requests already on their way when the limit fell: then none"
    assert limiter.current(redis)["api_rate"] == new_rate, "the limiter follows X-RateLimit-Limit"
    # Never above the new limit: in any stretch after the first 429, no more requests than its rate allows
    # (plus one, and the one that was on its way when the 429 came).
    for i, start in enumerate(after):
        for j in range(i, len(after)):
            assert j - i + 1 <= new_rate * (after[j] - start) + 2, f"{j - i + 1} requests in {after[j] - start:.2f} s"
