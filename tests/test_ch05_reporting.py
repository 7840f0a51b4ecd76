"""Chapter 5: runs that report themselves, check their data and keep to a budget.

The pieces alone: the price list, the budget script under concurrent spenders, the
quality rules against the data set's own glitches (three seeds no other test uses),
the reconciliation. Then whole runs, with two real worker processes (shared by the
module; each test takes a day of its own) against the fake API: a clean day and a
faulty one reported to the figure, a budget that runs out and a second run that
completes the day, one report per run whatever kicks and crashes happen, and the
pipeline without its report pipeline.
"""
from __future__ import annotations

import importlib
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pandera.pandas as pa
import pytest
import requests

import explain

from workshop import settings as settings_mod, stations as answer_key
from workshop.stations import PLAUSIBLE
from workshop.api import ApiConfig, ApiServer
from workshop.workers import WorkerProcesses

from celery.signals import task_success
from celery.utils.dispatch import Signal

from ch03_signals import lock
from ch04_rate_limits import dead_letters, keys as ch04_keys, pipeline as ch04_pipeline
from ch05_reporting import budget, keys, prices, quality, reconcile, runs, runs_table, signals
from ch05_reporting import pipeline

TESTS = Path(__file__).parent
APP = "ch05_workers"
N, BATCH = 60, 5                      # 12 calls a day
PRICE_REQUEST, PRICE_STATION = 0.001, 0.0002
CALL = prices.to_micro(PRICE_REQUEST) + BATCH * prices.to_micro(PRICE_STATION)   # 2,000 micro
DAY_COST = (N // BATCH) * CALL
KINDS = answer_key.GLITCH_KINDS
TIMEOUT = 60.0
EXERCISES = ("5.1", "5.2", "5.3", "5.4")
whole_run = pytest.mark.exercises(*EXERCISES)


# ---------------------------------------------------------------- 5.1 the signal: defined, sent once per run, connected


def the_signal():
    """signals.run_finished, or a failure that says it is not defined yet (exercise 5.1, part 1)."""
    found = signals.run_finished
    assert isinstance(found, Signal), (f"run_finished is not a celery Signal (signals.run_finished is {found!r}): "
                                       "define it in signals.py (exercise 5.1, part 1)")
    return found


def end_a_run(r, day: str, spent: bool = False) -> tuple[str, str, list[tuple]]:
    """A loop's end on a prepared day (no worker): its lock ours, a run open, two stations left pending if
    `spent` (with its budget exhausted); what `end` answered and every run_finished it sent, (sender, run, day,
    outcome)."""
    k = pipeline.LOOP.keys(day)
    assert lock.acquire(r, k.lock, "owner", 60_000)
    run = runs.open(r, day, budget_micro=None)
    if spent:
        r.hset(keys.RunKeys(run).record, "exhausted", 1)
        r.zadd(ch04_keys.for_day(day).pending, {"WX00001": 0, "WX00002": 0})
    sent = []
    the_signal().connect(lambda sender, **kw: sent.append((sender, kw.get("run"), kw.get("day"), kw.get("outcome"))),
                         weak=False, dispatch_uid="test:5.1")
    try:
        ended = pipeline.LOOP.end(r, k, "owner", "finish")
    finally:
        the_signal().disconnect(dispatch_uid="test:5.1")
    return run, ended, sent


def sent_once(sent: list[tuple], run: str, day: str, outcome: str) -> str | None:
    """What is wrong with the run_finished sends of one run's end, in one sentence; None when nothing is."""
    if len(sent) != 1:
        return f"run_finished was sent {len(sent)} times for one run (ReportingLoop.end, exercise 5.1, part 2)"
    sender, *said = sent[0]
    if sender is not pipeline.LOOP:
        return (f"run_finished was sent with sender {sender!r} instead of the loop (self): the report pipeline "
                "listens to the loop's sends only")
    for field, expected, got in zip(("run", "day", "outcome"), (run, day, outcome), said):
        if got != expected:
            return (f"run_finished was sent with {field}={got!r}, expected {expected!r} (for the outcome: what the "
                    "end's script wrote in the run's record)")
    return None


@pytest.mark.exercise("5.1")
def test_5_1_run_finished_is_a_celery_signal_of_its_own():
    signal = the_signal()
    assert signal is not task_success and signal.name == "run_finished", \
        f"run_finished is named {signal.name!r}: name it \"run_finished\" (it names the signal in celery's logs)"


@pytest.mark.exercise("5.1")
def test_5_1_a_loops_end_sends_run_finished_once_with_the_loop_as_sender_and_the_runs_outcome(redis):
    for day, spent, outcome in (("2030-02-01", False, "finished"), ("2030-02-02", True, "budget spent")):
        run, ended, sent = end_a_run(redis, day, spent)
        assert ended == "finished"
        wrong = sent_once(sent, run, day, outcome)
        if wrong:
            pytest.fail(wrong, pytrace=False)
    k = pipeline.LOOP.keys("2030-02-03")
    redis.set(k.lock, "another owner")
    runs.open(redis, "2030-02-03")
    lost = []
    the_signal().connect(lambda sender, **kw: lost.append(kw), weak=False, dispatch_uid="test:5.1-lost")
    try:
        assert pipeline.LOOP.end(redis, k, "owner", "finish") == "lost"
    finally:
        the_signal().disconnect(dispatch_uid="test:5.1-lost")
    assert lost == [], "run_finished was sent by an end that did not end the loop (it answered 'lost')"


@pytest.mark.exercise("5.1")
def test_5_1_the_report_pipelines_handler_is_connected_to_the_loops_run_finished(monkeypatch):
    signal = the_signal()
    from ch05_reporting import reporting   # as a worker does: listed in the app's include
    importlib.reload(reporting)   # imported a second time (a module run as a script, a test): connects nothing more
    reached = []
    monkeypatch.setattr(reporting, "redis_client", lambda: None)   # the handler's send is recorded: no Redis needed
    monkeypatch.setattr(reporting, "send_report", lambda r, run: reached.append(run))
    signal.send(sender=pipeline.LOOP, run="2030-02-04.1", day="2030-02-04", outcome="finished")
    if not reached:
        pytest.fail("the report pipeline's handler is not connected to run_finished with the loop as sender "
                    "(reporting.py, exercise 5.1, part 3): a send of the loop reached nothing", pytrace=False)
    if len(reached) > 1:
        pytest.fail(f"one send of the loop reached the report pipeline's handler {len(reached)} times: imported "
                    "twice, reporting.py connected it twice; give connect a dispatch_uid", pytrace=False)
    signal.send(sender=object(), run="2030-02-04.2", day="2030-02-04", outcome="finished")
    if reached != ["2030-02-04.1"]:
        pytest.fail("the report pipeline's handler answers run_finished from any sender: connect it with "
                    "sender=LOOP, this pipeline's loop", pytrace=False)


@pytest.mark.wrong_attempt("5.1")
def test_5_1_a_handler_connected_for_every_sender_fails_naming_the_sender(monkeypatch):
    """A first try: connect without a sender (a report for any loop's run_finished, another chapter's too)."""
    signal = the_signal()
    monkeypatch.setattr(signal, "receivers", [])   # the module's own connection, set aside for this test
    monkeypatch.setattr(signal, "sender_receivers_cache", {})
    connect = signal.connect
    monkeypatch.setattr(signal, "connect", lambda *args, sender=None, **options: connect(*args, **options))
    with pytest.raises(pytest.fail.Exception) as failed:
        test_5_1_the_report_pipelines_handler_is_connected_to_the_loops_run_finished(monkeypatch)
    said = str(failed.value).splitlines()[0]
    print(said)
    assert said == ("the report pipeline's handler answers run_finished from any sender: connect it with "
                    "sender=LOOP, this pipeline's loop")


# ---------------------------------------------------------------- prices and the budget

def test_the_price_list_gives_the_most_a_call_costs_and_what_the_terms_bill():
    p = prices.Prices(request=1000, station=200, billed="2xx")
    assert p.call(5) == 2000 and p.billed_for(200, 5) == 2000
    assert p.billed_for(429, 5) == 0 and p.billed_for(503, 5) == 0
    assert prices.Prices(1000, 200, "all").billed_for(429, 5) == 1000
    assert p.cheapest_batch(50) == 50, "the request price is shared: the largest batch is cheapest"
    assert prices.Prices(0, 200, "2xx").cheapest_batch(50) == 50
    assert p.to_finish(12, 5) == 3 * 1000 + 12 * 200 and p.to_finish(0, 5) == 0
    assert prices.money(12_345) == "$0.0123"


@pytest.mark.exercise("5.2")
def test_5_2_the_budget_never_lets_concurrent_spenders_overspend(redis):
    run = runs.open(redis, "2030-01-01", budget_micro=100_000)
    granted, lock = [], threading.Lock()

    def spend(amount: int):
        while budget.reserve(redis, run, amount, call := budget.new_call()):
            with lock:
                granted.append((amount, call))

    threads = [threading.Thread(target=spend, args=(amount,)) for amount in (700, 1100, 1300, 2900) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = budget.state(redis, run)
    print(f"{len(granted)} reservations, spent {state['spent']} of 100000")
    granted_total = sum(amount for amount, _ in granted)
    assert state["spent"] == granted_total, \
        f"spent_micro is {state['spent']} but the {len(granted)} reservations granted add up to {granted_total}"
    assert state["spent"] <= 100_000, f"spent {state['spent']} of a budget of 100000: two spenders took the same room"
    assert state["spent"] > 100_000 - 2900, \
        f"spent {state['spent']} of 100000 and every spender refused: a call of 2900 still fitted"
    assert state["exhausted"], "a reservation that did not fit left the run's field exhausted unset"
    assert not budget.reserve(redis, run, 1), "an exhausted run granted 1 more: once exhausted, nothing more"
    amount, call = granted[0]
    assert budget.settle(redis, run, call, ["WX00001"], 429, 0, 0.1), "a call the terms did not bill: all back"
    assert budget.state(redis, run)["spent"] == state["spent"] - amount
    assert budget.settle(redis, run, call, ["WX00001"], 429, 0, 0.1), "settled, said again"
    assert budget.state(redis, run)["spent"] == state["spent"] - amount, "given back once"
    assert not budget.reserve(redis, run, 1), "giving back after that does not reopen the run"


@pytest.mark.exercise("5.2")
def test_5_2_a_run_without_a_budget_spends_freely_and_a_zero_budget_nothing(redis):
    free = runs.open(redis, "2030-01-02")
    assert all(budget.reserve(redis, free, 10**9) for _ in range(3)), "a run without a budget (-1) refused a call"
    assert budget.state(redis, free) == {"budget": None, "spent": 3 * 10**9, "exhausted": False}
    broke = runs.open(redis, "2030-01-03", budget_micro=0)
    assert not budget.reserve(redis, broke, 1), "a budget of 0 granted a call: 0 is a budget, only -1 is none"


def test_a_run_stays_open_until_closed_once(redis):
    first = runs.open(redis, "2030-01-04", budget_micro=10)
    assert runs.open(redis, "2030-01-04", budget_micro=99) == first, "a restart goes on in the open run"
    assert budget.state(redis, first)["budget"] == 10, "with the budget it opened with"
    lock = pipeline.LOOP.keys("2030-01-04").lock
    redis.set(lock, "a loop")
    assert runs.close(redis, "2030-01-04", "finished", lock) is None, "a running loop closes its own run"
    redis.delete(lock)
    assert runs.close(redis, "2030-01-04", "finished", lock) == first
    assert runs.close(redis, "2030-01-04", "finished", lock) is None, "closed once"
    assert runs.unreported_runs(redis) == [first]
    assert runs.open(redis, "2030-01-04") != first, "the next kick opens a new run"


def test_chapter_5s_fetch_deliveries_are_counted_on_receipt_by_chapter_4s_handler(redis):
    """Chapter 5 reuses chapter 4's machinery: its worker's main process counts each fetch delivery it receives."""
    from types import SimpleNamespace
    from ch04_rate_limits import deliveries, leases, retries
    from ch05_reporting import handlers, tasks  # noqa: F401 (handlers: connected, as in a worker)
    day, k = "2026-01-15", ch04_keys.for_day("2026-01-15")
    redis.zadd(k.pending, dict.fromkeys(["WX00001", "WX00002"], 0))
    batch = leases.lease(redis, k, 2, 30, leases.token("c5"))
    request = SimpleNamespace(id="c5", type=tasks.fetch_batch.name, args=[batch, day], request_dict={"retries": 0})
    deliveries.on_received(sender=None, request=request)
    assert retries.attempts(redis, k) == dict.fromkeys(batch, 1)


# ---------------------------------------------------------------- quality rules

def served_and_logged(seed: int) -> tuple[dict, list[dict]]:
    """Readings as the API serves them (over HTTP, 400 stations in batches of 50) and its own log of the glitches
    it served."""
    config = ApiConfig(seed=seed, stations=400, max_batch=50, rate=1e6, burst=1_000_000, glitch_rate=0.06,
                       glitch_kinds=KINDS)
    ids, served = answer_key.station_ids(400), []
    with ApiServer(config, port=0) as api, requests.Session() as session:
        for start in range(0, len(ids), 50):
            response = session.get(f"{api.url}/readings", headers={"X-API-Key": config.key}, timeout=10,
                                   params={"stations": ",".join(ids[start:start + 50]), "date": "2026-03-01"})
            served.append(response.json()["readings"])
        logged = api.stats()["glitch_log"]
    assert all(n > 50 for n in Counter(g["kind"] for g in logged).values()), "every kind, many times"
    return served, logged


def assert_findings_are_the_glitch_log(served: list[dict], logged: list[dict]) -> None:
    """The verdict of 5.3: the rules' findings on every batch are the API's glitch log, no miss, no false alarm;
    a failure names the hour, the station and the value."""
    found = [f for batch in served for f in quality.check(batch)]
    as_found = Counter((f["station"], f["hour"], f["rule"], f["value"]) for f in found)
    as_logged = Counter((g["station"], g["hour"], g["kind"], g["value"]) for g in logged)
    if as_found != as_logged:
        pytest.fail(explain.findings_per_hour(as_logged, as_found), pytrace=False)


@pytest.mark.exercise("5.3")
@pytest.mark.parametrize("seed", [1717, 2828, 3939])
def test_5_3_quality_findings_equal_the_apis_glitch_log_exactly(seed):
    """The findings are the API's own log of the glitches it served, no miss, no false alarm."""
    served, logged = served_and_logged(seed)
    print(f"seed {seed}: {len(logged)} glitches served, {Counter(g['kind'] for g in logged)}")
    assert_findings_are_the_glitch_log(served, logged)


def spike_without_the_gap_check(frame):
    """A first try: the rows before and after, whatever hours they are (a gap makes two hours apart neighbours)."""
    t = quality._good_temperature(frame)
    before, after = t.groupby(frame["station"]).shift(1), t.groupby(frame["station"]).shift(-1)
    return ~(((t - before > quality.SPIKE_C) & (t - after > quality.SPIKE_C))
             | ((before - t > quality.SPIKE_C) & (after - t > quality.SPIKE_C)))


def spike_against_one_neighbour(frame):
    """A first try: far from the hour before is enough (so the hour after a spike is one too)."""
    t = quality._good_temperature(frame)
    return ~((t - quality._neighbour(frame, t, -1)).abs() > quality.SPIKE_C)


def spike_with_implausible_neighbours(frame):
    """A first try: the temperature as served, 999.9 and all (an implausible value is a neighbour too)."""
    t = frame["temperature_c"]
    before, after = quality._neighbour(frame, t, -1), quality._neighbour(frame, t, +1)
    return ~(((t - before > quality.SPIKE_C) & (t - after > quality.SPIKE_C))
             | ((before - t > quality.SPIKE_C) & (after - t > quality.SPIKE_C)))


def beside_a_gap() -> dict:
    """A clean day of WX00001 with hour 11 not served and hour 10 jumped 20 degrees: hour 10 has one neighbour."""
    hours = [h for h in answer_key.readings(1, "WX00001", "2026-03-03") if h["hour"] != 11]
    hours[10] = {**hours[10], "temperature_c": hours[10]["temperature_c"] + 20}
    return {"WX00001": hours}


def assert_an_hour_beside_a_gap_is_not_checked(served: dict) -> None:
    found = Counter((f["station"], f["hour"], f["rule"], f["value"]) for f in quality.check(served))
    expected = Counter({("WX00001", 11, "gap", None): 1})
    if found != expected:
        pytest.fail("hour 10 of WX00001 is beside a gap (hour 11 not served), so it has one neighbour and is not "
                    f"checked for a spike: {explain.findings_per_hour(expected, found)}", pytrace=False)


@pytest.mark.exercise("5.3")
def test_5_3_an_hour_beside_a_gap_is_not_checked_for_a_spike():
    assert_an_hour_beside_a_gap_is_not_checked(beside_a_gap())


@pytest.mark.exercise("5.3")
def test_5_3_a_spike_down_is_a_spike_too():
    """The API's spikes jump up (the data set's own choice); a sensor can drop as well."""
    hours = answer_key.readings(1, "WX00001", "2026-03-03")
    hours[10] = {**hours[10], "temperature_c": round(hours[10]["temperature_c"] - 20, 1)}
    found = Counter((f["station"], f["hour"], f["rule"], f["value"]) for f in quality.check({"WX00001": hours}))
    expected = Counter({("WX00001", 10, "spike", hours[10]["temperature_c"]): 1})
    if found != expected:
        pytest.fail(f"hour 10 of WX00001 dropped 20 degrees below both neighbours: "
                    f"{explain.findings_per_hour(expected, found)}", pytrace=False)


@pytest.fixture
def spike_rule(monkeypatch):
    """Put another spike rule in the schema: `spike_rule(attempt)`."""
    def use(attempt):
        checks = [pa.Check(attempt, name="spike")]
        monkeypatch.setattr(quality, "SCHEMA", pa.DataFrameSchema(quality.SCHEMA.columns, checks=checks,
                                                                   coerce=True))
    return use


@pytest.mark.parametrize("attempt, says", [
    (spike_against_one_neighbour,
     "hour 12 of WX00001: 10 flagged as spike, but it is a clean reading; hour 16 of WX00008: 27.8 flagged as spike"),
    (spike_with_implausible_neighbours,
     "hour 14 of WX00000: 999.9 is implausible, and was flagged as spike too; hour 18 of WX00000: 999.9 is"),
])
@pytest.mark.wrong_attempt("5.3")
def test_5_3_a_plausible_wrong_spike_rule_fails_naming_the_hour_and_station(spike_rule, attempt, says):
    served, logged = served_and_logged(1717)
    spike_rule(attempt)
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_findings_are_the_glitch_log(served, logged)
    said = str(failed.value).splitlines()[0]
    print(said)
    assert said.startswith(says), said


@pytest.mark.wrong_attempt("5.3")
def test_5_3_a_spike_rule_without_the_gap_check_fails_naming_the_hour_beside_the_gap(spike_rule):
    spike_rule(spike_without_the_gap_check)
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_an_hour_beside_a_gap_is_not_checked(beside_a_gap())
    said = str(failed.value).splitlines()[0]
    print(said)
    assert said.endswith("hour 10 of WX00001: 24.7 flagged as spike, but it is a clean reading"), said


@pytest.mark.exercise("5.3")
def test_5_3_flagged_hours_are_left_out_and_the_summary_is_the_answer_keys():
    from ch01_periodic.summary import summarise
    for station in answer_key.station_ids(80):
        served = {station: answer_key.readings(7, station, "2026-03-02", 0.1, KINDS)}
        clean = quality.exclude(served, quality.check(served))[station]
        got = summarise(station, "2026-03-02", clean)
        expected = answer_key.expected_summary(station, "2026-03-02", 7, 0.1, KINDS)
        if not answer_key.same_summary(got, expected):
            truth = [(g["station"], g["hour"], g["kind"], g["value"])
                     for g in answer_key.glitches(7, station, "2026-03-02", 0.1, KINDS)]
            found = [(f["station"], f["hour"], f["rule"], f["value"]) for f in quality.check(served)]
            pytest.fail(f"{explain.summary(expected, got)}, because {explain.findings_per_hour(truth, found)}",
                        pytrace=False)


def test_a_null_value_is_a_finding_not_a_crash():
    hours = answer_key.readings(1, "WX00001", "2026-03-03")
    hours[5] = {**hours[5], "humidity_pct": None}
    assert quality.check({"WX00001": hours}) == [{"station": "WX00001", "hour": 5, "rule": "missing", "value": None}]


# ---------------------------------------------------------------- reconciliation

API_DAY = {"requests": 12, "rate_limited": 1, "server_errors": 2, "cost_micro": 20_000}
AGREED = {**API_DAY, "no_answer": 0, "answer_lost": 0}
# (what we recorded, what 5.4 finds: (figure, difference, cause) per figure that differs), the API's side API_DAY
RECONCILIATIONS = [
    ("all agree", AGREED, []),
    ("a call timed out", {**AGREED, "cost_micro": 22_000, "no_answer": 1}, [("cost_micro", 2000, "no_answer")]),
    ("the same calls billed higher", {**AGREED, "cost_micro": 18_000}, [("cost_micro", -2000, "price_list")]),
    ("a worker died before it settled a call that never reached the API",
     {**AGREED, "requests": 13, "cost_micro": 22_000, "answer_lost": 1},
     [("requests", 1, "answer_lost"), ("cost_micro", 2000, "answer_lost")]),
    ("another client used the key", {**AGREED, "requests": 10, "cost_micro": 18_000},
     [("requests", -2, "not_recorded"), ("cost_micro", -2000, "not_recorded")]),
    ("the API restarted", {**AGREED, "requests": 14, "server_errors": 3}, [("requests", 2, "reset"),
                                                                        ("server_errors", 1, "reset")]),
]


def what_differs(recorded: dict, api: dict | None) -> list[tuple]:
    return [(d["figure"], d["difference"], d["cause"]) for d in reconcile.differences(recorded, api)]


def wrong_reconciliation(case: str, recorded: dict, expected: list[tuple], got: list[tuple]) -> str:
    """One sentence: the case, and the figure whose finding is missing, extra or of another cause."""
    theirs, ours = {f: (d, c) for f, d, c in expected}, {f: (d, c) for f, d, c in got}
    for figure in reconcile.FIGURES:
        if theirs.get(figure) != ours.get(figure):
            said = "no finding" if figure not in ours else f"difference {ours[figure][0]}, cause {ours[figure][1]!r}"
            wanted = "no finding" if figure not in theirs else \
                f"difference {theirs[figure][0]}, cause {theirs[figure][1]!r}"
            return (f"{case} (ours {recorded}, the API's {API_DAY}): {figure} has {said}, expected {wanted}")
    return f"{case}: findings {got}, expected {expected}"


@pytest.mark.exercise("5.4")
@pytest.mark.parametrize("case, recorded, expected", RECONCILIATIONS, ids=[c[0] for c in RECONCILIATIONS])
def test_5_4_reconciliation_names_each_difference_and_its_likely_cause(case, recorded, expected):
    got = what_differs(recorded, API_DAY)
    if got != expected:
        pytest.fail(wrong_reconciliation(case, recorded, expected, got), pytrace=False)
    for d in reconcile.differences(recorded, API_DAY):
        assert (d["ours"], d["api"]) == (recorded[d["figure"]], API_DAY[d["figure"]]), d
        assert d["why"] == reconcile.WHY[d["cause"]].format(**recorded), "the cause's own sentence (WHY)"


def test_5_4_the_api_without_statistics_is_said_not_hidden():
    assert what_differs(AGREED, None) == [("all", None, "no_stats")]


def reconcile_by_sign_only(recorded, api):
    """A first try: above is a reset, below is another client, whatever the figure and the calls without answer."""
    return [reconcile.finding(f, recorded, api, "reset" if recorded[f] > api[f] else "not_recorded")
            for f in reconcile.FIGURES if recorded[f] != api[f]]


@pytest.mark.wrong_attempt("5.4")
def test_5_4_a_reconciliation_by_sign_only_fails_naming_the_figure_and_cause(monkeypatch):
    monkeypatch.setattr(reconcile, "differences", reconcile_by_sign_only)
    with pytest.raises(pytest.fail.Exception) as failed:
        test_5_4_reconciliation_names_each_difference_and_its_likely_cause(*RECONCILIATIONS[1])
    said = str(failed.value).splitlines()[0]
    print(said)
    assert said.startswith("a call timed out (ours ") and \
        said.endswith("cost_micro has difference 2000, cause 'reset', expected difference 2000, cause 'no_answer'")


# ---------------------------------------------------------------- whole runs

# Before the module's shared workers start (they would take this test's batches too): its own workers, of the
# app without the report pipeline in `include`.
@whole_run
def test_the_pipeline_runs_the_same_without_its_report_pipeline(redis, fake_api, worker_processes, monkeypatch,
                                                                  tmp_path):
    for name, value in {"API_MAX_BATCH": BATCH, "API_STATIONS": N, "API_GLITCH_KINDS": ",".join(KINDS),
                        "API_GLITCH_RATE": 0.05, "CH02_DB": tmp_path / "db.sqlite3", "CH04_LEASE": 15,
                        "CH05_WITHOUT_REPORTING": 1,
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
                        }.items():
        monkeypatch.setenv(name, str(value))
    api = fake_api(rate=20, burst=10)
    workers = worker_processes(APP, 2, pool="prefork", concurrency=1)
    day = "2026-05-01"
    run = run_day(redis, day)
    assert pipeline.outcome(redis, day) == {"stations": N, "done": N, "missing": 0, "wrong": 0, "dead": 0}
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)
    time.sleep(2)
    assert runs.is_unreported(redis, run), "ended, and nobody reported it: nothing listens"
    assert not (tmp_path / "db.sqlite3").exists() or not runs_table.rows(day=day)
    assert "ch05_reporting.report_run" not in workers.log(0) + workers.log(1)



@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    """The fake API and two prefork workers of chapter 5's app, for the whole module.

    Every test takes a day of its own and a fresh SQLite file, so runs never meet."""
    tmp = tmp_path_factory.mktemp("ch05")
    env = {"API_MAX_BATCH": BATCH, "API_STATIONS": N, "API_PRICE_REQUEST": PRICE_REQUEST,
           "API_PRICE_STATION": PRICE_STATION, "API_GLITCH_KINDS": ",".join(KINDS), "API_GLITCH_RATE": 0.05,
           "API_RATE": 20, "API_BURST": 10, "CH04_LEASE": 15, "CH05_REPORTS": tmp / "reports",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, str(value))
        client = redis_server.client()
        client.flushdb()
        api = ApiServer(ApiConfig.from_settings(settings_mod.load()), port=0).start()
        patch.setenv("API_URL", api.url)
        patch.setenv("API_KEY", api.config.key)
        workers = WorkerProcesses(APP, 2, pool="prefork", concurrency=1, log_dir=str(tmp)).start()
        try:
            yield {"api": api, "redis": client, "tmp": tmp, "workers": workers, "profile": api.config.as_dict()}
        finally:
            workers.stop()
            api.stop()
            client.close()


_days = iter(f"2026-04-{d:02d}" for d in range(1, 29))


@pytest.fixture
def day(stack, monkeypatch):
    """A day of this test's own, a fresh SQLite file (CH02_DB here, the loop's `db` option for the
    workers), the API's counts zeroed and its profile the module's (a test's faults stay in that test), the
    limit forgotten."""
    the_day = next(_days)
    monkeypatch.setenv("CH02_DB", str(stack["tmp"] / f"{the_day}.sqlite3"))
    stack["api"].reset(**stack["profile"])
    ch04_pipeline.reset_limits(stack["redis"])
    return the_day


def run_day(r, day: str, budget: float | None = None) -> str:
    run = pipeline.run(r, day, N, db=os.environ["CH02_DB"], timeout=TIMEOUT, show=False, budget=budget)
    assert run is not None, f"the loop did not end in {TIMEOUT:.0f} s: {pipeline.LOOP.status(r, day)}"
    return run


def reported(r, run: str) -> dict:
    from ch05_reporting import reporting   # the test may; the pipeline never does
    row = reporting.wait(r, run, timeout=30, db=os.environ["CH02_DB"])
    assert row is not None, f"no report for run {run} within 30 s"
    return row


def api_day(api, day: str) -> dict:
    stats = api.stats()
    counts = stats["by_day"].get(day, {})
    return {"requests": sum(counts.values()), "429": counts.get("429", 0),
            "5xx": sum(n for s, n in counts.items() if s.startswith("5")),
            "cost": round(stats["bill"]["by_day"].get(day, 0) * prices.MICRO), "stats": stats}


def assert_report_is_the_truth(r, api, day: str, row: dict) -> None:
    """Done, dead, missing against the answer key and dead letters; requests, 429s, 5xx, cost against /_stats."""
    outcome = pipeline.outcome(r, day)
    buried = dead_letters.dead_letters(r, ch04_keys.for_day(day))
    theirs = api_day(api, day)
    print({k: row[k] for k in ("outcome", "done", "dead_lettered", "missing", "api_requests", "rate_limited",
                               "server_errors", "no_answer", "retries", "cost_micro", "utilisation")})
    assert outcome["wrong"] == 0 and row["done"] == outcome["done"]
    assert row["dead_lettered"] == outcome["dead"] == len(buried)
    assert row["dead_reasons"] == dict(Counter(b["reason"] for b in buried.values()))
    assert row["missing"] == outcome["missing"] + outcome["dead"] - row["dead_lettered"] + 0
    assert (row["api_requests"], row["rate_limited"], row["server_errors"]) == \
           (theirs["requests"], theirs["429"], theirs["5xx"])
    assert row["cost_micro"] == theirs["cost"], "what we paid is what the API billed"
    assert row["reconciled"] == 1 and row["differences"] == []


@whole_run
def test_a_clean_day_is_reported_to_the_figure_and_its_findings_are_the_apis_glitch_log(stack, day):
    r, api = stack["redis"], stack["api"]
    run = run_day(r, day)
    row = reported(r, run)

    assert row["outcome"] == "finished" and row["done"] == N and row["missing"] == 0
    assert_report_is_the_truth(r, api, day, row)
    assert row["api_requests"] == N // BATCH and row["retries"] == 0 and row["cost_micro"] == DAY_COST
    logged = {(g["station"], g["hour"], g["kind"], g["value"]) for g in api.stats()["glitch_log"]}
    found = {(f["station"], f["hour"], f["rule"], f["value"]) for f in quality.findings(r, day)}
    assert logged and found == logged and row["glitches_found"] == len(logged)
    page = Path(os.environ["CH05_REPORTS"]) / f"run-{run}.html"
    html = page.read_text()
    assert "finished" in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html, "self-contained: no external URL"


@whole_run
def test_a_faulty_day_is_reported_to_the_figure_too(stack, day):
    r, api = stack["redis"], stack["api"]
    api.reset(error_rate=0.15, malformed_rate=0.05, rate=8, burst=2)   # 5xx, broken bodies and 429s
    run = run_day(r, day)
    row = reported(r, run)
    assert row["server_errors"] and row["retries"], "the faults happened"
    assert row["done"] + row["dead_lettered"] == N
    assert_report_is_the_truth(r, api, day, row)


@whole_run
def test_a_budget_for_60_percent_stops_the_run_and_a_second_run_completes_the_day(stack, day):
    r, api = stack["redis"], stack["api"]
    budget_money = 0.6 * DAY_COST / prices.MICRO
    first = run_day(r, day, budget=budget_money)
    row = reported(r, first)

    bill = api_day(api, day)["cost"]
    print(f"budget {budget_money:.4f}: billed {bill / prices.MICRO:.4f}; {pipeline.LOOP.status(r, day)}")
    assert bill <= prices.to_micro(budget_money), "the API's bill never exceeds the budget"
    assert budget.state(r, first)["spent"] == bill, "what the run spent is what the API billed, to the micro"
    assert row["outcome"] == "budget spent"
    fetched = row["stations_fetched"]
    assert fetched == BATCH * (prices.to_micro(budget_money) // CALL), "as many calls as the budget pays for"
    assert row["done"] == fetched and row["pending"] == N - fetched, "everything fetched was also persisted"
    assert row["to_finish_micro"] == prices.Prices(1000, 200, "2xx").to_finish(N - fetched, BATCH)

    second = run_day(r, day, budget=1.0)
    row2 = reported(r, second)
    assert second != first and row2["outcome"] == "finished" and row2["done"] == N
    assert row2["cost_micro"] == row["to_finish_micro"], "finishing cost what the first report said"
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1), "no station billed twice"
    assert pipeline.outcome(r, day)["done"] == N
    assert [x["run"] for x in runs_table.rows(day=day)] == [first, second]


@whole_run
def test_one_report_per_run_through_ten_kicks_a_watchdog_restart_and_a_killed_report_worker(stack, day):
    from ch05_reporting import watchdog
    from ch05_workers import KILL_REPORT_KEY, KILLED_REPORT_KEY
    r, api = stack["redis"], stack["api"]
    api.reset(rate=10, burst=2)
    r.set(KILL_REPORT_KEY, 1)   # the first report task dies mid-report
    ch04_pipeline.ch03_pipeline.discover(day, N)
    kicks = [threading.Thread(target=pipeline.kick, args=(r, day, os.environ["CH02_DB"])) for _ in range(10)]
    for kick in kicks:
        kick.start()
    for kick in kicks:
        kick.join()
    run = runs.current(r, day)
    # The loop dies silently (its lock dropped, as when a worker dies between batches); the watchdog repairs it.
    time.sleep(0.3)
    r.delete(pipeline.LOOP.keys(day).lock)
    time.sleep(0.5)
    assert watchdog.watchdog.apply().get()[day] == "restarted"
    assert pipeline.LOOP.wait(r, day, TIMEOUT), pipeline.LOOP.status(r, day)
    row = reported(r, run)

    assert r.get(KILLED_REPORT_KEY) == run, "a report worker was killed mid-report"
    assert "signal 9 (SIGKILL)" in stack["workers"].log(0) + stack["workers"].log(1)
    assert runs.current(r, day) is None and r.get(keys.sequence(day)) == "1", "one run"
    assert [x["run"] for x in runs_table.rows(day=day)] == [run], "one report"
    assert row["done"] == N and row["outcome"] == "finished"
    assert api.stats()["fetches"] == dict.fromkeys(answer_key.station_ids(N), 1)


@whole_run
def test_a_worker_killed_between_the_apis_answer_and_the_record_is_reported_as_billed_answer_lost(stack, day):
    from ch05_workers import KILL_AFTER_ANSWER_KEY, KILLED_AFTER_ANSWER_KEY
    from ch05_reporting import report
    r, api = stack["redis"], stack["api"]
    r.set(KILL_AFTER_ANSWER_KEY, answer_key.station_ids(N)[17])
    run = run_day(r, day)
    row = reported(r, run)

    theirs = api_day(api, day)
    print(f"killed after the answer for {r.get(KILLED_AFTER_ANSWER_KEY)}; ours {row['api_requests']} requests, "
          f"{row['cost_micro']} micro, {row['answer_lost']} lost; the API's {theirs['requests']}, {theirs['cost']}")
    assert r.get(KILLED_AFTER_ANSWER_KEY), "a pool process died between the API's answer and the record"
    assert row["answer_lost"] == 1, "the call is on record from its reservation"
    assert (row["api_requests"], row["cost_micro"]) == (theirs["requests"], theirs["cost"]), \
        "recorded cost equals the bill: the lost call at what it reserved, which is what a 200 bills"
    assert row["reconciled"] == 1 and row["differences"] == [], "nothing blamed on another client"
    assert "1 billed, answer lost" in report.text(row)
    assert row["done"] == N and pipeline.outcome(r, day)["done"] == N, \
        f"{pipeline.outcome(r, day)}; dead letters {dead_letters.dead_letters(r, ch04_keys.for_day(day))}"
