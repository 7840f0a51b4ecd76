"""The fake Stations API does what the chapters rely on: exact rate limits, reproducible
faults, honest counters, and the same data as the answer key.

Most tests talk HTTP to a real server on a free port; the fault-determinism tests call
`StationsAPI.handle` directly, which is the same code without sockets and sleeps.
"""
from __future__ import annotations

import email.utils
import http.client
import math
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from workshop import settings, stations
from workshop.api import ApiConfig, ApiServer, StationsAPI, main

KEY = "test-key"
DAY = "2026-01-15"
UNLIMITED = dict(rate=1e6, burst=1_000_000)
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(60)


def make_config(**changes) -> ApiConfig:
    """A small, unthrottled, fault-free API; each test turns on what it checks."""
    return ApiConfig(**{"key": KEY, "stations": 300, "max_batch": 50, "seed": 7, "slow_seconds": 0.3,
                        **UNLIMITED, **changes})


@pytest.fixture
def api():
    with ApiServer(make_config()) as server:
        yield server


@pytest.fixture
def client():
    with requests.Session() as session:
        session.headers["X-API-Key"] = KEY
        yield session


def get_readings(client, api, ids, day=DAY):
    return client.get(f"{api.url}/readings", params={"stations": ",".join(ids), "date": day}, timeout=5)


def parsed_or_none(response):
    try:
        return response.json()
    except ValueError:
        return None


# --------------------------------------------------------------------------- rate limit

def send_paced(client, url, per_second, seconds):
    """GET `url` on a fixed schedule of `per_second` (no drift: a late request does not delay the next)."""
    start, responses = time.perf_counter(), []
    for i in range(round(per_second * seconds)):
        wait = start + i / per_second - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        responses.append(client.get(url, timeout=5))
    return responses


def assert_rate_limit_headers(response, limit):
    assert response.headers["X-RateLimit-Limit"] == limit
    assert int(response.headers["X-RateLimit-Remaining"]) >= 0
    assert int(response.headers["X-RateLimit-Reset"]) >= 0


def test_bucket_is_exact_on_a_fake_clock():
    now = [100.0]
    api = StationsAPI(make_config(rate=20, burst=5), clock=lambda: now[0])
    hit = lambda: api.handle("GET", "/stations", {}, {"X-API-Key": KEY})  # noqa: E731

    assert [hit().status for _ in range(6)] == [200] * 5 + [429]    # starts full: burst 5
    rejected = hit()
    assert rejected.headers["Retry-After"] == "1"                   # 0.05 s to a token, rounded up to 1
    assert rejected.headers["X-RateLimit-Remaining"] == "0"
    assert rejected.headers["X-RateLimit-Reset"] == "1"             # 5 tokens / 20 per s = 0.25 s, up to 1
    now[0] += 0.051                                                 # one token refilled, not two
    assert [hit().status for _ in range(2)] == [200, 429]
    now[0] += 10                                                    # refills to the burst, not beyond
    assert [hit().status for _ in range(6)] == [200] * 5 + [429]


def test_client_at_exactly_the_limit_is_never_rejected(api, client):
    api.reset(rate=20, burst=5)
    responses = send_paced(client, f"{api.url}/stations?per_page=1", per_second=20, seconds=2)
    assert Counter(r.status_code for r in responses) == {200: 40}
    for response in responses:
        assert_rate_limit_headers(response, "20")


def test_client_at_twice_the_limit_gets_about_half_rejected(api, client):
    api.reset(rate=20, burst=5)
    started = time.perf_counter()
    responses = send_paced(client, f"{api.url}/stations?per_page=1", per_second=40, seconds=2.5)
    took = time.perf_counter() - started
    # Theory: 100 requests in 2.5 s; the bucket admits its 5 tokens plus 20/s * 2.5 s = 55,
    # so 45 of 100 are rejected (0.45). Measured against the time the client really took,
    # so a loaded machine that sends a little late does not move the target.
    rejected = [r for r in responses if r.status_code == 429]
    expected_share = 1 - min(len(responses), 5 + 20 * took) / len(responses)
    assert abs(len(rejected) / len(responses) - expected_share) <= 0.05
    assert {r.status_code for r in responses} == {200, 429}
    for response in responses:
        assert_rate_limit_headers(response, "20")
    for response in rejected:
        assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    assert api.stats()["rate_limited"] == len(rejected)


def test_retry_after_counts_whole_seconds_until_the_next_token(api, client):
    api.reset(rate=0.1, burst=1)    # one token every 10 s
    started = time.monotonic()
    assert client.get(f"{api.url}/stations").status_code == 200
    rejected = client.get(f"{api.url}/stations")
    elapsed = time.monotonic() - started
    assert rejected.status_code == 429
    # The next token comes 10 s after the first request: what is left of that, rounded up
    # (a loaded machine may take a while between the two requests).
    assert math.ceil(10 - elapsed) <= int(rejected.headers["Retry-After"]) <= 10
    assert rejected.headers["X-RateLimit-Limit"] == "0.1"


def test_retry_after_as_http_date_lies_far_enough_in_the_future(api, client):
    api.reset(rate=0.1, burst=1, retry_after="http-date")
    before_first = time.time()
    client.get(f"{api.url}/stations")
    rejected = client.get(f"{api.url}/stations")
    after_second = time.time()
    assert rejected.status_code == 429
    when = email.utils.parsedate_to_datetime(rejected.headers["Retry-After"])
    assert when.tzinfo is not None
    # Not before the next token (10 s after the first request), at most a second's rounding later.
    assert before_first + 10 <= when.timestamp() <= after_second + 11


# --------------------------------------------------------------------------- faults

FAULTY = dict(error_rate=0.2, slow_rate=0.2, malformed_rate=0.2)


def distinct_requests(count, day=DAY):
    """`count` different readings requests: single stations and pairs."""
    ids = stations.station_ids(300)
    return [[ids[i % 300]] if i < 300 else [ids[i % 300], ids[(i * 7 + 1) % 300]] for i in range(count)]


def fault_outcomes(api: StationsAPI) -> dict:
    """(sorted stations, date, attempt) -> (kind, status) for every injected fault; absent means ok."""
    return {(tuple(sorted(e["stations"])), e["date"], e["attempt"]): (e["kind"], e["status"])
            for e in api.stats()["fault_log"]}


def send_in_threads(api: StationsAPI, batches, threads):
    def worker(share):
        for ids in share:
            assert api.handle("GET", "/readings", {"stations": ",".join(ids), "date": DAY},
                              {"X-API-Key": KEY}).status != 404
    workers = [threading.Thread(target=worker, args=(batches[n::threads],)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_faults_depend_on_the_request_not_on_order_or_threads():
    batches = distinct_requests(150) * 3            # every request three times: attempts 0, 1, 2
    in_order = StationsAPI(make_config(**FAULTY))
    send_in_threads(in_order, batches, threads=1)

    shuffled = batches[:]
    random.Random(1).shuffle(shuffled)
    shuffled = [list(reversed(ids)) for ids in shuffled]   # station order inside a request does not matter
    concurrent = StationsAPI(make_config(**FAULTY))
    send_in_threads(concurrent, shuffled, threads=4)

    expected = fault_outcomes(in_order)
    assert len(expected) > 100                     # the profile injected plenty
    assert fault_outcomes(concurrent) == expected
    # A retry is a new draw: some request fails on one attempt and not on another.
    faulted_attempts = Counter((ids, day) for ids, day, _attempt in expected)
    assert 1 in faulted_attempts.values() and 2 in faulted_attempts.values()


def test_another_seed_gives_another_fault_profile():
    batches = distinct_requests(200)
    outcomes = []
    for seed in (7, 8):
        api = StationsAPI(make_config(seed=seed, **FAULTY))
        send_in_threads(api, batches, threads=1)
        outcomes.append(fault_outcomes(api))
    assert outcomes[0] != outcomes[1]


def test_each_fault_kind_shows_up_at_its_rate():
    rates = dict(error_rate=0.1, slow_rate=0.05, malformed_rate=0.15)
    api = StationsAPI(make_config(**rates))
    send_in_threads(api, distinct_requests(400), threads=1)
    faults = api.stats()["faults"]
    for kind in ("error", "slow", "malformed"):
        # Binomial sd at 400 draws is at most 0.018; 0.05 is ~3 sd (and the seed is fixed).
        assert abs(faults[kind] / 400 - rates[f"{kind}_rate"]) < 0.05, kind
    statuses = {e["status"] for e in api.stats()["fault_log"] if e["kind"] == "error"}
    assert statuses <= {500, 502, 503} and len(statuses) > 1


def test_faults_over_http_from_threads_match_the_in_process_profile(api):
    api.reset(**FAULTY, slow_seconds=0.05)
    batches = distinct_requests(60) * 2
    observed = Counter()
    lock = threading.Lock()

    def worker(share):
        with requests.Session() as session:
            session.headers["X-API-Key"] = KEY
            for ids in share:
                response = get_readings(session, api, ids)
                outcome = "error" if response.status_code >= 500 else (
                    "malformed" if parsed_or_none(response) is None else "served")
                with lock:
                    observed[tuple(sorted(ids)), outcome] += 1

    workers = [threading.Thread(target=worker, args=(batches[n::4],)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    reference = StationsAPI(make_config(**FAULTY))
    send_in_threads(reference, batches, threads=1)
    assert fault_outcomes(api.api) == fault_outcomes(reference)
    expected = Counter()
    for (ids, _day, _attempt), (kind, _status) in fault_outcomes(reference).items():
        if kind in ("error", "malformed"):
            expected[ids, kind] += 1
    assert Counter({k: n for k, n in observed.items() if k[1] != "served"}) == expected


def test_error_fault_is_a_5xx_with_a_json_reason(api, client):
    api.reset(error_rate=1.0)
    response = get_readings(client, api, ["WX00001"])
    assert response.status_code in (500, 502, 503)
    assert "injected fault" in response.json()["error"]


def test_malformed_fault_is_a_200_whose_body_is_not_json(api, client):
    api.reset(malformed_rate=1.0)
    response = get_readings(client, api, ["WX00001", "WX00002"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_slow_fault_takes_at_least_slow_seconds_then_serves_good_data(api, client):
    api.reset(slow_rate=1.0, slow_seconds=0.3)
    started = time.perf_counter()
    response = get_readings(client, api, ["WX00001"])
    assert time.perf_counter() - started >= 0.3
    assert response.json()["readings"]["WX00001"] == stations.readings(7, "WX00001", DAY)


def test_peak_in_flight_counts_requests_served_at_once_not_control_calls(api):
    api.reset(slow_rate=1.0, slow_seconds=0.4)
    barrier = threading.Barrier(3)

    def one(station):
        with requests.Session() as session:
            session.headers["X-API-Key"] = KEY
            barrier.wait()
            get_readings(session, api, [station])

    threads = [threading.Thread(target=one, args=(f"WX0000{i}",)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)   # all three are waiting out their slow answer now
    during = requests.get(f"{api.url}/_stats", timeout=2).json()["peak_in_flight"]
    for thread in threads:
        thread.join()
    get_readings(requests.Session(), api, ["WX00004"])   # no key, 401: one at a time
    assert during == 3 and api.stats()["peak_in_flight"] == 3
    api.reset()
    assert api.stats()["peak_in_flight"] == 0


def test_a_client_that_times_out_on_a_slow_response_leaves_the_server_healthy(api, client):
    api.reset(slow_rate=1.0, slow_seconds=0.5)
    with pytest.raises(requests.Timeout):
        client.get(f"{api.url}/readings", params={"stations": "WX00001", "date": DAY}, timeout=0.1)
    time.sleep(0.5)    # the server now writes to a closed connection
    assert requests.get(f"{api.url}/_health", timeout=2).json() == {"ok": True}


# --------------------------------------------------------------------------- counters and control

def test_stats_count_exactly_what_the_client_saw(api, client):
    api.reset(error_rate=0.15, slow_rate=0.1, malformed_rate=0.15, glitch_rate=0.05, slow_seconds=0.3)
    statuses, fetched, served_glitches = Counter(), Counter(), 0
    seen_faults = Counter()
    for n in range(3):
        statuses[client.get(f"{api.url}/stations", params={"page": n + 1}).status_code] += 1
    statuses[requests.get(f"{api.url}/stations").status_code] += 1                 # no key: 401
    statuses[get_readings(client, api, ["WX99999"]).status_code] += 1               # unknown: 404
    for ids in distinct_requests(40):
        started = time.perf_counter()
        response = get_readings(client, api, ids)
        statuses[response.status_code] += 1
        body = parsed_or_none(response)
        if response.status_code >= 500:
            seen_faults["error"] += 1
        elif body is None:
            seen_faults["malformed"] += 1
        else:
            seen_faults["slow"] += time.perf_counter() - started >= 0.3
            fetched.update(body["readings"].keys())
            served_glitches += sum(not stations.is_plausible(r) for hours in body["readings"].values()
                                   for r in hours)

    stats = api.stats()
    assert stats["requests"] == sum(statuses.values()) == 45
    assert stats["by_status"] == {str(status): n for status, n in statuses.items()}
    assert stats["accepted"] == statuses[200]
    assert stats["rate_limited"] == 0
    assert stats["fetches"] == dict(fetched)
    assert stats["faults"] == {"error": seen_faults["error"], "slow": seen_faults["slow"],
                               "malformed": seen_faults["malformed"], "glitch": served_glitches}
    assert all(seen_faults[kind] > 0 for kind in ("error", "slow", "malformed")) and served_glitches > 0
    assert len(stats["fault_log"]) == sum(seen_faults.values())
    assert stats["first_request_at"] <= stats["last_request_at"] <= time.time()


def test_a_rejected_request_draws_no_fault(api, client):
    api.reset(rate=0.1, burst=3, error_rate=1.0)
    statuses = Counter(get_readings(client, api, ["WX00005"]).status_code for _ in range(10))
    assert statuses[429] == 7
    stats = api.stats()
    assert stats["rate_limited"] == 7 and stats["requests"] == 10
    assert [e["attempt"] for e in stats["fault_log"]] == [0, 1, 2]   # only the 3 admitted were drawn


def test_health_and_stats_are_free_and_uncounted(api):
    api.reset(rate=1, burst=1)
    for _ in range(5):
        assert requests.get(f"{api.url}/_health").json() == {"ok": True}
        assert requests.get(f"{api.url}/_stats").status_code == 200
    assert api.stats()["requests"] == 0


def test_reset_zeroes_the_stats_and_restarts_the_fault_sequence(api, client):
    api.reset(error_rate=0.5)
    for ids in distinct_requests(20):
        get_readings(client, api, ids)
    first_log = api.stats()["fault_log"]
    assert api.stats()["requests"] == 20 and first_log

    response = requests.post(f"{api.url}/_reset", json={"error_rate": 0.5, "glitch_rate": 0.1})
    assert response.status_code == 200 and response.json()["glitch_rate"] == 0.1
    stats = api.stats()
    assert (stats["requests"], stats["by_status"], stats["fetches"], stats["fault_log"]) == (0, {}, {}, [])
    assert stats["faults"] == {"error": 0, "slow": 0, "malformed": 0, "glitch": 0}
    assert stats["first_request_at"] is None and stats["config"]["glitch_rate"] == 0.1

    for ids in distinct_requests(20):    # the same requests draw the same faults again
        get_readings(client, api, ids)
    assert api.stats()["fault_log"] == first_log


def test_reset_refills_the_bucket(api, client):
    api.reset(rate=0.1, burst=3)
    assert [client.get(f"{api.url}/stations").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert requests.post(f"{api.url}/_reset").json()["burst"] == 3     # no body: same config
    assert [client.get(f"{api.url}/stations").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_reset_rejects_a_bad_change_and_keeps_the_config(api):
    response = requests.post(f"{api.url}/_reset", json={"error_rate": 0.7, "slow_rate": 0.5})
    assert response.status_code == 400 and "at most 1" in response.json()["error"]
    response = requests.post(f"{api.url}/_reset", json={"ratee": 5})
    assert response.status_code == 400 and "ratee" in response.json()["error"]
    assert api.config == make_config()


def test_config_lowers_the_limit_mid_run_without_zeroing(api, client):
    for _ in range(5):
        assert client.get(f"{api.url}/stations").status_code == 200
    response = requests.post(f"{api.url}/_config", json={"rate": 0.5, "burst": 2})
    assert response.status_code == 200 and response.json()["rate"] == 0.5
    statuses = [client.get(f"{api.url}/stations") for _ in range(6)]
    # The full bucket keeps its tokens, capped at the new burst of 2; then a 429 storm.
    assert [r.status_code for r in statuses] == [200, 200, 429, 429, 429, 429]
    assert statuses[-1].headers["X-RateLimit-Limit"] == "0.5"
    stats = api.stats()
    assert stats["requests"] == 11 and stats["rate_limited"] == 4


# --------------------------------------------------------------------------- data and validation

def test_readings_equal_the_answer_key(api, client):
    ids = ["WX00000", "WX00042", "WX00299"]
    body = get_readings(client, api, ids).json()
    assert body["date"] == DAY
    assert body["readings"] == {s: stations.readings(7, s, DAY) for s in ids}


def test_glitches_are_served_and_counted(api, client):
    api.reset(glitch_rate=0.1)
    ids = stations.station_ids(20)
    body = get_readings(client, api, ids).json()
    expected = {s: stations.readings(7, s, DAY, 0.1) for s in ids}
    assert body["readings"] == expected
    glitched = [r for hours in body["readings"].values() for r in hours
                if r["temperature_c"] == stations.GLITCH_TEMPERATURE]
    assert 20 <= len(glitched) <= 80           # ~10% of 480 hours
    assert api.stats()["faults"]["glitch"] == len(glitched)


def test_null_stations_serve_one_null_temperature_set_over_http(api, client):
    ids = stations.station_ids(3)
    answer = requests.post(f"{api.url}/_config", json={"null_stations": [ids[1]]}, timeout=5)
    assert answer.status_code == 200 and answer.json()["null_stations"] == [ids[1]]
    body = get_readings(client, api, ids).json()["readings"]
    assert body[ids[1]][0]["temperature_c"] is None
    assert body[ids[1]][1:] == stations.readings(7, ids[1], DAY)[1:]
    assert body[ids[0]] == stations.readings(7, ids[0], DAY)
    bad = requests.post(f"{api.url}/_config", json={"null_stations": "ST0001"}, timeout=5)
    assert bad.status_code == 400 and "list of station ids" in bad.json()["error"]


def test_pagination_covers_every_station_exactly_once(api, client):
    seen, page, pages = [], 1, 0
    while page is not None:
        body = client.get(f"{api.url}/stations", params={"page": page, "per_page": 70}).json()
        assert body["total"] == 300 and body["per_page"] == 70
        seen += body["stations"]
        page, pages = body["next_page"], pages + 1
    assert seen == stations.station_ids(300)
    assert pages == 5


def test_default_page_size_comes_from_the_config(api, client):
    body = client.get(f"{api.url}/stations").json()
    assert len(body["stations"]) == 100 and body["page"] == 1 and body["next_page"] == 2


def test_batch_larger_than_the_maximum_is_refused_with_the_maximum(api, client):
    response = get_readings(client, api, stations.station_ids(51))
    assert response.status_code == 400
    assert response.json()["error"] == ("batch of 51 stations is larger than the maximum of 50; "
                                        "split it into batches of at most 50")
    assert get_readings(client, api, stations.station_ids(50)).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}], ids=["missing", "wrong"])
@pytest.mark.parametrize("path", ["/stations", "/readings?stations=WX00001&date=2026-01-15"])
def test_a_missing_or_wrong_key_gets_401(api, headers, path):
    response = requests.get(api.url + path, headers=headers)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["error"]
    assert "X-RateLimit-Limit" not in response.headers


@pytest.mark.parametrize("station", ["WX00300", "WX99999", "WX1", "XX00001"])
def test_an_unknown_station_gets_404_naming_it(api, client, station):
    response = get_readings(client, api, ["WX00001", station])
    assert response.status_code == 404
    assert station in response.json()["error"]


@pytest.mark.parametrize("params, words", [
    ({"stations": "WX00001", "date": "2026-02-30"}, "date"),
    ({"stations": "WX00001", "date": "15/01/2026"}, "date"),
    ({"stations": "WX00001"}, "date"),
    ({"stations": "", "date": DAY}, "no stations"),
    ({"date": DAY}, "no stations"),
    ({"stations": "WX00001,WX00002,WX00001", "date": DAY}, "more than once"),
])
def test_bad_readings_requests_get_400_saying_why(api, client, params, words):
    response = client.get(f"{api.url}/readings", params=params)
    assert response.status_code == 400
    assert words in response.json()["error"]


@pytest.mark.parametrize("params", [{"per_page": 1001}, {"per_page": 0}, {"page": 0}, {"page": "x"}])
def test_bad_pages_get_400(api, client, params):
    assert client.get(f"{api.url}/stations", params=params).status_code == 400


# --------------------------------------------------------------------------- config and CLI

@pytest.mark.parametrize("changes, field", [
    ({"rate": 0}, "rate"), ({"burst": 0}, "burst"), ({"error_rate": 1.5}, "error_rate"),
    ({"glitch_rate": -0.1}, "glitch_rate"), ({"retry_after": "minutes"}, "retry_after"),
    ({"page_size": 5000}, "page_size"), ({"key": ""}, "key"), ({"burst": 2.5}, "burst"),
])
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        make_config(**changes)


def test_config_from_settings_uses_the_effective_burst():
    config = ApiConfig.from_settings(settings.load({"API_RATE": "7.5", "SEED": "3", "API_KEY": "k"}))
    assert (config.rate, config.burst, config.seed, config.key) == (7.5, 8, 3, "k")


@pytest.mark.parametrize("argv, words", [
    (["--rate", "-1"], "rate"),
    (["--rate", "abc"], "--rate"),
    (["--error-rate", "0.7", "--slow-rate", "0.5"], "at most 1"),
    (["--retry-after", "never"], "--retry-after"),
    (["--port", "70000"], "--port"),
])
def test_cli_bad_value_prints_one_sentence_and_exits_2(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err


def test_cli_bad_environment_prints_one_sentence_and_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("API_RATE", "fast")
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0"])
    assert exit_info.value.code == 2
    assert "API_RATE" in capsys.readouterr().err


def test_cli_serves_until_stopped():
    command = [sys.executable, "-m", "workshop.api", "--port", "0", "--rate", "3", "--key", KEY]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Stations API on http://127.0.0.1:") and "rate 3/s, burst 3" in line
        url = line.split()[3].rstrip(":")
        assert requests.get(f"{url}/_health", timeout=5).json() == {"ok": True}
        assert requests.get(f"{url}/stations", headers={"X-API-Key": KEY}, timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)


# --------------------------------------------------------------------------- HTTP edges

def address(api) -> tuple[str, int]:
    url = urlsplit(api.url)
    return url.hostname, url.port


def raw_exchange(api, request: bytes) -> tuple[int, dict, bytes]:
    """Send `request` bytes on a fresh socket and read until the server closes it.

    For requests `requests` would refuse to send. Returns the status, the headers (lower-case
    names) and the body; a server that does not close within the timeout fails the test.
    """
    with socket.create_connection(address(api), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_json_error(status, headers, body, expected_status, words):
    """A complete JSON error answer, as the API gives for every bad request, then a close."""
    assert status == expected_status
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert words in json.loads(body)["error"]


def test_a_request_line_over_64_kib_gets_a_json_414_naming_the_batch_limit(api):
    ids = ",".join(stations.station_ids(12_000))      # ~96 KB of query
    request = f"GET /readings?stations={ids}&date={DAY} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n"
    assert_json_error(*raw_exchange(api, request.encode()), 414, "at most 50 stations per request")
    assert api.stats()["by_status"] == {"414": 1}


@pytest.mark.parametrize("extra", [
    "".join(f"X-Filler-{n}: {n}\r\n" for n in range(200)),    # too many
    f"X-Filler: {'x' * 70_000}\r\n",                          # too long
], ids=["200-headers", "70-kb-header"])
def test_headers_too_many_or_too_long_get_a_json_431(api, extra):
    request = f"GET /stations HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n{extra}\r\n"
    assert_json_error(*raw_exchange(api, request.encode()), 431, "headers")
    assert api.stats()["by_status"] == {"431": 1}


@pytest.mark.parametrize("request_line", [
    "NONSENSE", "GET /stations HTTP/one", "GET /sta tions HTTP/1.1", "GET http://[::1/stations HTTP/1.1",
])
def test_a_malformed_request_line_gets_a_json_400(api, request_line):
    status, headers, body = raw_exchange(api, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert_json_error(status, headers, body, 400, "send")
    assert api.stats()["by_status"] == {"400": 1}


ALLOWED = {"/stations": "GET, HEAD", "/readings": "GET, HEAD", "/_health": "GET, HEAD", "/_stats": "GET, HEAD",
           "/_reset": "POST", "/_config": "POST"}


@pytest.mark.parametrize("path, allowed, method", [
    (path, allowed, method) for path, allowed in ALLOWED.items()
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW") if method not in allowed
])
def test_a_method_the_path_does_not_answer_gets_a_json_405_with_allow(api, client, path, allowed, method):
    response = client.request(method, api.url + path, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.headers["Content-Type"] == "application/json"
    assert path in response.json()["error"]
    assert api.stats()["by_status"] == {"405": 1}      # control paths too: a wrong method is traffic


def test_head_is_get_without_the_body(api):
    api.reset(rate=0.1, burst=2)
    connection = http.client.HTTPConnection(*address(api), timeout=5)
    try:
        answers = []
        for method in ("HEAD", "GET", "HEAD"):       # one connection: a stray HEAD body would break the next
            connection.request(method, f"/readings?stations=WX00001&date={DAY}", headers={"X-API-Key": KEY})
            response = connection.getresponse()
            answers.append((response.status, response.getheaders(), response.read()))
        connection.request("HEAD", "/_health")
        health = connection.getresponse()
        assert (health.status, health.read()) == (200, b"")
    finally:
        connection.close()
    (head_status, head_headers, head_body), (get_status, get_headers, get_body), limited = answers
    assert (head_status, get_status, head_body) == (200, 200, b"")
    ignore = {"Date", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert [h for h in head_headers if h[0] not in ignore] == [h for h in get_headers if h[0] not in ignore]
    assert dict(head_headers)["Content-Length"] == str(len(get_body))
    assert limited[0] == 429 and limited[2] == b""    # HEAD took a token like GET; the 429 has no body
    stats = api.stats()
    assert stats["by_status"] == {"200": 2, "429": 1} and stats["fetches"] == {"WX00001": 2}


@pytest.mark.parametrize("expect", ["", "Expect: 100-continue\r\n"], ids=["plain", "expect-100"])
def test_a_huge_content_length_gets_a_json_413_and_the_body_is_never_read(api, expect):
    request = f"POST /_reset HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: 1000000000000000\r\n\r\n"
    started = time.perf_counter()
    assert_json_error(*raw_exchange(api, request.encode()), 413, "at most 65536 bytes")
    assert time.perf_counter() - started < 3           # answered at once, no body awaited
    assert api.stats()["by_status"] == {"413": 1}
    assert requests.get(f"{api.url}/_health", timeout=5).json() == {"ok": True}


def test_a_body_one_byte_over_the_cap_gets_413_and_one_at_the_cap_is_read(api):
    cap = 64 * 1024
    over = f"POST /_reset HTTP/1.1\r\nHost: x\r\nContent-Length: {cap + 1}\r\n\r\n".encode() + b" " * (cap + 1)
    assert_json_error(*raw_exchange(api, over), 413, "65536")
    at_cap = json.dumps({"glitch_rate": 0.5}).ljust(cap)
    assert requests.post(f"{api.url}/_reset", data=at_cap, timeout=5).json()["glitch_rate"] == 0.5


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "5\r\nContent-Length: 6"],
                         ids=["negative", "text", "float", "signed", "two-headers"])
def test_a_bad_content_length_gets_a_json_400(api, length):
    request = f"POST /_reset HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}"
    assert_json_error(*raw_exchange(api, request.encode()), 400, "Content-Length")
    assert api.stats()["by_status"] == {"400": 1}


def test_a_chunked_body_gets_a_json_411(api):
    request = "POST /_reset HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    assert_json_error(*raw_exchange(api, request.encode()), 411, "Content-Length")
    assert api.config == make_config()                 # the chunked body was not taken as a reset


def test_every_answer_is_counted_by_status_only(api, client):
    """Unknown paths and HTTP-layer refusals count under their status, and only there."""
    seen = Counter()
    for path in ("/nope", "/_nope", "/readings/"):
        seen[client.get(api.url + path, timeout=5).status_code] += 1
    seen[client.put(f"{api.url}/stations", timeout=5).status_code] += 1
    for request in (b"NONSENSE\r\n\r\n", b"POST /_reset HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                    b"GET /stations?" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n"):
        seen[raw_exchange(api, request)[0]] += 1
    assert seen == {404: 3, 405: 1, 400: 1, 413: 1, 414: 1}
    stats = api.stats()
    assert stats["requests"] == sum(seen.values())
    assert stats["by_status"] == {str(status): n for status, n in seen.items()}
    assert (stats["accepted"], stats["rate_limited"], stats["fetches"], stats["fault_log"]) == (0, 0, {}, [])
    assert stats["faults"] == {"error": 0, "slow": 0, "malformed": 0, "glitch": 0}


# --------------------------------------------------------------------------- glitch log and bill

def test_the_glitch_log_lists_each_glitch_served_once_with_how_often(client):
    kinds = stations.GLITCH_KINDS
    with ApiServer(make_config(glitch_rate=0.05, glitch_kinds=kinds)) as api:
        ids = stations.station_ids(100)
        for start in range(0, 100, 50):
            get_readings(client, api, ids[start:start + 50]).raise_for_status()
        get_readings(client, api, ids[:10]).raise_for_status()   # served again
        stats = api.stats()
    truth = [g for s in ids for g in stations.glitches(7, s, DAY, 0.05, kinds)]
    logged = stats["glitch_log"]
    assert sorted((g["station"], g["hour"], g["kind"], g["value"]) for g in logged) == \
           sorted((g["station"], g["hour"], g["kind"], g["value"]) for g in truth)
    assert {g["served"] for g in logged if g["station"] in ids[:10]} == {2}
    assert stats["faults"]["glitch"] == len(truth) + sum(g["station"] in ids[:10] for g in truth)


def test_a_gap_is_an_hour_missing_from_the_readings(client):
    with ApiServer(make_config(glitch_rate=0.1, glitch_kinds=("gap",))) as api:
        body = get_readings(client, api, stations.station_ids(20)).json()
    gaps = {g["hour"] for g in stations.glitches(7, "WX00003", DAY, 0.1, ("gap",))}
    assert gaps and [r["hour"] for r in body["readings"]["WX00003"]] == [h for h in range(24) if h not in gaps]


def test_the_bill_charges_each_success_its_request_and_stations_by_default(client):
    with ApiServer(make_config(price_request=0.01, price_station=0.001, error_rate=0.3)) as api:
        answers = [get_readings(client, api, stations.station_ids(n, start=10 * i)).status_code
                   for i, n in enumerate([5, 10, 1, 50, 20, 7, 3, 9] * 3)]
        client.get(f"{api.url}/stations", timeout=5).raise_for_status()
        stats = api.stats()
    sizes = [5, 10, 1, 50, 20, 7, 3, 9] * 3
    ok = [n for n, status in zip(sizes, answers) if status == 200]
    assert 0 < len(ok) < len(sizes)   # some 5xx, which are not billed under "2xx"
    bill = stats["bill"]
    assert bill["total_micro"] == sum(10_000 + 1_000 * n for n in ok) + 10_000
    assert bill["billed_requests"] == len(ok) + 1
    assert set(bill["by_status"]) == {"200"} and bill["by_day"]["listing"] == 0.01
    assert bill["by_day"][DAY] == pytest.approx(sum(0.01 + 0.001 * n for n in ok))


def test_billed_all_charges_429s_and_5xx_their_request_only(client):
    with ApiServer(make_config(price_request=0.01, price_station=0.001, error_rate=0.5, billed="all",
                               rate=1, burst=3)) as api:
        answers = Counter(get_readings(client, api, stations.station_ids(4, start=4 * i)).status_code
                          for i in range(8))
        stats = api.stats()
    assert answers[429] and sum(n for status, n in answers.items() if status >= 500)
    billed_ok = answers[200] * (10_000 + 4_000)
    assert stats["bill"]["total_micro"] == billed_ok + 10_000 * (8 - answers[200])
    assert stats["bill"]["billed_requests"] == 8


def test_a_request_without_the_key_is_never_billed(api):
    requests.get(f"{api.url}/readings", params={"stations": "WX00001", "date": DAY}, timeout=5)
    assert api.stats()["bill"]["total_micro"] == 0


@pytest.mark.parametrize("changes, field", [
    ({"glitch_kinds": ["wobble"]}, "glitch_kinds"), ({"glitch_kinds": []}, "glitch_kinds"),
    ({"price_request": -1}, "price_request"), ({"billed": "some"}, "billed"),
])
def test_billing_and_glitch_settings_are_validated(changes, field):
    with pytest.raises(ValueError, match=field):
        make_config(**changes)


def test_the_kit_settings_know_the_same_glitch_kinds():
    assert settings.GLITCH_KINDS == stations.GLITCH_KINDS
    assert settings.load({"API_GLITCH_KINDS": "spike, gap"}).api_glitch_kinds == ("spike", "gap")
    with pytest.raises(settings.SettingsError, match="API_GLITCH_KINDS"):
        settings.load({"API_GLITCH_KINDS": "spike,wobble"})


def test_readings_answers_are_counted_per_day_asked_for_429s_included(client):
    with ApiServer(make_config(rate=1, burst=2, price_request=0.01, price_station=0, billed="all")) as api:
        answers = Counter(get_readings(client, api, ["WX00001"], day).status_code
                          for day in ("2026-01-15", "2026-01-15", "2026-01-15", "2026-01-16"))
        stats = api.stats()
    assert answers[429] == 2
    assert sum(stats["by_day"]["2026-01-15"].values()) == 3 and sum(stats["by_day"]["2026-01-16"].values()) == 1
    assert sum(stats["by_day"][d].get("429", 0) for d in stats["by_day"]) == 2
    assert stats["bill"]["by_day"] == {"2026-01-15": 0.03, "2026-01-16": 0.01}
