"""`make watch`: a known state in Redis and a known /_stats render the known numbers.

The state is built with the chapters' own keys modules, so the view reads the keys the
pipelines write. Nothing here starts a worker: the view only reads.
"""
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from workshop import watch

DAY = "2026-01-15"


@pytest.fixture
def fake_stats():
    """A /_stats that answers the next of `answers` (the last one again once they run out)."""
    answers = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answers.pop(0) if len(answers) > 1 else answers[0]).encode()
            self.send_response(200 if self.path == "/_stats" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield answers, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def stage(r, key, ids):
    if ids:
        r.zadd(key, {station: 0 for station in ids})


def known_day(r):
    """24 stations: 5 pending, 6 in flight (two holders), 3 fetched, 2 transformed, 5 persisted, 3 dead."""
    from ch03_signals import keys as loop_keys
    from ch04_rate_limits import keys as day_keys
    from ch05_reporting import keys as run_keys

    k, lk, api = day_keys.Keys(DAY), loop_keys.LoopKeys("ch05", DAY), day_keys.ApiKeys()
    ids = [f"ST{n:03d}" for n in range(24)]
    stage(r, k.stations, ids)
    stage(r, k.pending, ids[0:5])
    stage(r, k.fetched, ids[11:14])
    stage(r, k.transformed, ids[14:16])
    stage(r, k.persisted, ids[16:21])
    seconds, micros = r.time()
    now_ms = seconds * 1000 + micros / 1000
    # holder A: 4 stations, soonest deadline 30 s away; holder B: 2 stations, one lease 20 s overdue
    leases = {"ST005": ("task-a:0", 30_000), "ST006": ("task-a:0", 40_000), "ST007": ("task-a:0", 40_000),
              "ST008": ("task-a:0", 40_000), "ST009": ("task-b:1", -20_000), "ST010": ("task-b:1", 50_000)}
    for station, (holder, offset) in leases.items():
        r.zadd(k.in_flight, {station: now_ms + offset})
        r.hset(k.holders, station, holder)
    dead = {"ST021": ("5xx", "HTTP 503 Service Unavailable", 100.0), "ST022": ("malformed", "not JSON", 300.0),
            "ST023": ("5xx", "HTTP 502 Bad Gateway", 200.0)}
    for station, (reason, detail, at) in dead.items():
        r.hset(k.dead_letters, station, json.dumps({"reason": reason, "detail": detail, "attempts": 3, "at": at}))
    r.set(lk.lock, "owner-7f3a", px=12_000)
    r.hset(lk.turns, mapping={"0": 37, "0:task": "t-0-37", "1": 35, "1:task": "t-1-35"})
    r.set(lk.restarts, 2)
    r.sadd(loop_keys.watched("ch05"), "2026-01-14", DAY)
    r.hset(api.limit, mapping={"rate": 9.5, "burst": 9, "api_rate": 10.0, "api_burst": 10})
    run = f"{DAY}.2"
    r.set(run_keys.open_run(DAY), run)
    r.set(run_keys.sequence(DAY), 2)
    r.hset(run_keys.RunKeys(run).record, mapping={"day": DAY, "started": 1.0, "budget_micro": 50_000,
                                                  "spent_micro": 12_345})


def stats(requests, limited, day_ok, day_limited):
    return {"requests": requests, "rate_limited": limited, "config": {"rate": 10.0},
            "by_day": {DAY: {"200": day_ok, "429": day_limited}, "2026-01-14": {"200": 7}}}


def text_of(view) -> str:
    console = Console(record=True, width=110, color_system=None)
    console.print(watch.render(view))
    return console.export_text()


def line_with(text, start):
    return next(line for line in text.splitlines() if line.strip(" │").startswith(start))


def test_a_known_state_renders_the_known_numbers(redis, fake_stats):
    known_day(redis)
    answers, url = fake_stats
    answers += [stats(100, 3, 90, 3), stats(130, 4, 119, 4)]
    now = [0.0]
    reader = watch.Reader(redis, watch.WatchKeys("ch05", watch.default_day(redis, "ch05")), url, clock=lambda: now[0])
    reader.read()
    now[0] = 2.0
    view = watch.model(reader.read())

    assert view.day == DAY, "the newest watched day"
    assert dict(view.stages) == {"pending": 5, "in flight": 6, "fetched": 3, "transformed": 2, "persisted": 5,
                                 "dead-lettered": 3}
    assert [(h.token, h.stations) for h in view.holders] == [("task-b:1", 2), ("task-a:0", 4)]
    assert view.holders[0].seconds_left == pytest.approx(-20, abs=5)   # the overdue lease comes first
    assert view.holders[1].seconds_left == pytest.approx(30, abs=5)
    assert view.requests_per_s == 15.0     # 30 requests between two samples 2 s apart
    assert view.dead_reasons == [("5xx", 2), ("malformed", 1)]

    text = text_of(view)
    assert "stages: 24 stations discovered" in text
    for name, n, share in [("pending", 5, "20.8 %"), ("in flight", 6, "25.0 %"), ("fetched", 3, "12.5 %"),
                           ("transformed", 2, "8.3 %"), ("persisted", 5, "20.8 %"), ("dead-lettered", 3, "12.5 %")]:
        row = line_with(text, name)
        assert re.search(rf"^{name}\s+{n}\s", row.strip(" │")) and row.rstrip(" │").endswith(share), row
    assert "leases in flight: 6 stations, 2 holders, 1 overdue" in text
    assert re.search(r"task-a:0\s+4\s+\d+\.\d s", text) and re.search(r"task-b:1\s+2\s+-\d+\.\d s", text)
    assert "ch05: running" in text and "owner-7f3a (lock 1" in text
    assert "chain 0: 37  chain 1: 35" in text
    assert "2 restarts" in text
    assert "15.0/s" in text and "API 10/s, limiter 9.5/s" in text
    assert f"4 in all, 4 for {DAY} (of 123 requests)" in text
    assert "dead letters: 3" in text and "5xx 2, malformed 1" in text
    last = [line_with(text, station) for station in ("ST022", "ST023", "ST021")]
    assert "malformed: not JSON" in last[0] and "5xx: HTTP 502" in last[1]
    assert text.index("ST022") < text.index("ST023") < text.index("ST021"), "the newest dead letter first"
    assert f"run {DAY}.2 (open): $0.0123 of $0.0500" in text


def test_a_refresh_is_a_few_bounded_commands_however_big_the_day(redis, fake_stats, redis_server):
    """No KEYS or SCAN, no HGETALL of the dead letters once they are many: a sample, said to be one."""
    from ch04_rate_limits import keys as day_keys
    known_day(redis)
    k = day_keys.Keys(DAY)
    many = watch.DEAD_READ + 50
    redis.hset(k.dead_letters, mapping={f"X{n:04d}": json.dumps({"reason": "5xx", "at": n}) for n in range(many)})
    answers, url = fake_stats
    answers.append(stats(0, 0, 0, 0))
    reader = watch.Reader(redis, watch.WatchKeys("ch05", DAY), url)
    admin = redis_server.client()
    before = admin.info("commandstats")
    view = watch.model(reader.read())
    after = admin.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): after[name]["calls"] - before.get(name, {}).get("calls", 0)
             for name in after}
    calls = {name: n for name, n in calls.items() if n and name not in ("info",)}
    assert sum(calls.values()) == reader.commands <= 25, calls
    assert not {"keys", "scan", "hscan", "smembers", "zrangebyscore"} & set(calls), calls
    assert calls.get("hgetall") == 2, "the turns and the limit (small, fixed) only: " + str(calls)
    assert calls.get("hrandfield") == 1
    assert view.dead == many + 3 and view.dead_sampled == watch.DEAD_READ
    assert f"(in a sample of {watch.DEAD_READ})" in text_of(view)


def test_chapters_3_and_4_loops_have_no_run_and_a_missing_api_is_said(redis):
    from ch03_signals import keys as loop_keys
    known_day(redis)
    view = watch.model(watch.Reader(redis, watch.WatchKeys("ch04", DAY), "http://127.0.0.1:9").read())
    text = text_of(view)
    assert view.loop_state == "not running" and view.chains == {} and view.run_id is None
    assert "chapter 4's loop has no budget" in text
    assert "/_stats unreachable" in text
    assert dict(view.stages)["in flight"] == 6, "the day's stages are the same whichever loop moves them"
    assert view.dead == 3

    redis.hset(loop_keys.LoopKeys("ch03", DAY).poison, "ST012",
               json.dumps({"segment": "transform", "detail": "a reading it cannot take", "at": 5.0}))
    view = watch.model(watch.Reader(redis, watch.WatchKeys("ch03", DAY), None).read())
    assert view.dead == 1 and view.dead_reasons == [("poison in transform", 1)], "chapter 3 sets poison aside"
    assert "chapter 3's loop has no budget" in text_of(view)


def test_make_watch_once_prints_the_day_and_bad_options_say_the_fix(redis, redis_server, fake_stats):
    known_day(redis)
    answers, url = fake_stats
    answers.append(stats(100, 3, 90, 3))
    env = dict(os.environ, COLUMNS="130")
    env.pop("REDIS_URL", None)
    watched = subprocess.run([sys.executable, "-m", "workshop", "watch", "--once", "--redis", redis_server.url,
                              "--api", url], capture_output=True, text=True, env=env, timeout=60)
    assert watched.returncode == 0, watched.stderr
    out = watched.stdout
    assert out.startswith(f"day {DAY} · loop ch05") and "stages: 24 stations discovered" in out
    assert "3 in all, 3 for 2026-01-15 (of 93 requests)" in out and f"run {DAY}.2 (open)" in out

    bad = subprocess.run([sys.executable, "-m", "workshop", "watch", "--once", "--day", "15/01/2026"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "pass it as YYYY-MM-DD" in bad.stderr
