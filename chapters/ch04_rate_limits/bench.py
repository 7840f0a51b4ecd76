# Exercise copy of solutions/ch04_rate_limits/bench.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""One rate limit for all, or one per worker? And chapter 1's monolith. Same day, same API, side by side.

    PYTHONPATH=solutions python -m ch04_rate_limits.bench [--stations 400] [--rate 10] [--max-batch 5]
    make bench-limits

Three pipelines, each with two real worker processes (prefork, one pool process
each), the same stations and a fresh fake API with the same limit:

- global limiter: chapter 4's loop, every request paced by the one limiter in Redis;
- Celery rate_limit: the same loop and tasks, paced by Celery's own `rate_limit`
  set to the API's rate (`app.control.rate_limit`), which each worker keeps for
  itself; a 429 retries that task after Retry-After;
- periodic (ch01): chapter 1's monolith, a slice every BEAT_INTERVAL seconds,
  one request per station, on the same two workers.

Each is measured from the outside (chapter 1's `measure`, through chapter 3's
benchmark table): the API's own counts, and the stored results against the
answer key. Wall time runs from the first API request until the pipeline is
over. Not a test: it prints figures.

    PYTHONPATH=solutions python -m ch04_rate_limits.bench --shapes [--seconds 6] [--max-batch 5]
    make bench-limits BENCH_ARGS=--shapes

`--shapes` runs the two loops (not chapter 1) at every shape: rate 2, 10, 50
and 100/s x burst 5, 10, 50 x 2 and 4 worker processes, plus 1/s burst 1, and
prints one table: utilisation over the fetch phase and over the whole run, and
429s, of each; then a verdict per shape for the global limiter: utilisation
over the fetch phase (first API request to the last: the rate limit used up to
the last request) at least 97 % with no 429; at 1/s burst 1, no 429. After the
last request the day's last stations are transformed and persisted, which asks
nothing of the API: the whole run's figure shows that tail. Each day holds the burst plus `--seconds` worth of requests at the rate
(a smaller day at 1/s), full batches of `--max-batch` stations. One fake API
and one set of workers per worker count serve every shape: the limit reaches
the workers through Redis (`limiter.configure`, at each kick) and Celery's
`rate_limit` by a broadcast, so only the API's limit changes between shapes.
`--stations`, `--rate`, `--burst` do not apply there. Exits 1 when the global
limiter misses a target.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from ch01_periodic import pipeline as periodic, runs
from ch01_periodic.app import app as periodic_app, beat_schedule as periodic_schedule
from ch02_segmented import database
from ch03_signals import pipeline as ch03_pipeline
from ch03_signals.benchmark import aligned, figures, side_by_side, table, utilisation_note, write_figures
from workshop import settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import provide_redis
from workshop.workers import EmbeddedBeat, WorkerProcesses

from . import limiter, pipeline
from .app import app as ch04_app
from .loop import WINDOW_ENV

WORKERS = 2


def workers(app_module: str, log_dir: str, count: int = WORKERS) -> WorkerProcesses:
    return WorkerProcesses(app_module, count, pool="prefork", concurrency=1, loglevel="WARNING", log_dir=log_dir)


def run_loop(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float,
             loop_name: str, log_dir: str) -> dict:
    with workers("ch04_rate_limits.app", log_dir):
        return loop_day(r, api, settings, ids, timeout, loop_name)


def loop_day(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float,
             loop_name: str, api_limit: dict | None = None) -> dict:
    """One day of a loop on chapter 4's workers, already running: its figures, and when the API saw
    its first and last request. `api_limit` ({rate, burst}): the API's limit for the day, not for discovery."""
    loop, day = pipeline.LOOPS[loop_name], settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.reset_limits(r)                          # the bench alone calls this API: a fresh limiter
    with tempfile.TemporaryDirectory(prefix="ch04-bench-") as folder:
        if api_limit:                                 # the listing's pages (1000 stations each) in one burst
            api.reset(burst=max(api_limit["burst"], 10))
        ch03_pipeline.discover(day, len(ids))
        api.reset(**(api_limit or {}))                # zero the counts, full bucket: the run starts now
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.kick(r, day, db=db, loop=loop)
        over = loop.wait(r, day, timeout)
        finished = time.time()
        summaries = {row["station"]: row for row in database.rows(db, day)}
        stats = api.stats()
    return {**figures(stats, summaries, ids, day, finished, over), "enforced": limiter.current(r),
            "first_request_at": stats["first_request_at"], "last_request_at": stats["last_request_at"],
            "finished_at": finished}


def run_periodic(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float,
                 log_dir: str) -> dict:
    day = settings.day.isoformat()
    periodic.reset(r, day)
    periodic.plan_day(r, day, ids)
    periodic_app.conf.beat_schedule = periodic_schedule(settings)
    with workers("ch01_periodic.app", log_dir):
        api.reset()
        with EmbeddedBeat(periodic_app, max_interval=min(1.0, settings.beat_interval / 4)):
            over = runs.wait(r, day, timeout)
            finished = time.time()
    return figures(api.stats(), periodic.summaries(r, day), ids, day, finished, over)


# ---------------------------------------------------------------- --shapes

SHAPE_RATES = (2.0, 10.0, 50.0, 100.0)
SHAPE_BURSTS = (5, 10, 50)
SHAPE_WORKERS = (2, 4)
SLOW_SHAPE = (1.0, 1)      # a burst too small to trim: the margin is taken in time
SLOW_SECONDS = 5.0         # its day: 1 + 5 requests
TARGET = 0.97              # utilisation the global limiter must reach, with no 429
SHAPE_LOOPS = {"global limiter": "global", "Celery rate_limit": "per-worker"}


class Shape(NamedTuple):
    rate: float
    burst: int
    workers: int

    @property
    def slow(self) -> bool:
        return (self.rate, self.burst) == SLOW_SHAPE

    def requests(self, seconds: float) -> int:
        """A day's requests: the burst, then `seconds` worth at the rate (SLOW_SECONDS at 1/s burst 1)."""
        return self.burst + math.ceil(self.rate * (SLOW_SECONDS if self.slow else seconds))


def shapes() -> list[Shape]:
    return [Shape(*SLOW_SHAPE, workers=n) for n in SHAPE_WORKERS[:1]] + \
        [Shape(rate, burst, n) for n in SHAPE_WORKERS for rate in SHAPE_RATES for burst in SHAPE_BURSTS]


def paced(shape: Shape, f: dict) -> dict:
    """The fetch phase, first API request to the last: `utilisation` (accepted requests/s / the API's rate,
    the same measure as the whole run's, over the time the API is asked) and `allowance` (the share of what
    the API allowed meanwhile, its burst plus the rate x the phase, that was used: the cushion shows here)."""
    span = (f["last_request_at"] - f["first_request_at"]) if f["first_request_at"] else 0.0
    n = f["accepted"]
    return {"span": span, "requests": n,
            "utilisation": n / span / shape.rate if span > 0 else 0.0,
            "allowance": n / (shape.burst + shape.rate * span) if span > 0 else 0.0}


def verdict(shape: Shape, f: dict) -> tuple[bool, str]:
    """Whether the global limiter met its target at `shape`, and a line that says why, with where the time went.

    The target is on the fetch phase: the rate limit used up to the last request. What follows the last
    request (transform and persist of the day's last stations, the loop's end) asks nothing of the API.
    """
    fetch = paced(shape, f)
    util_ok = shape.slow or fetch["utilisation"] >= TARGET
    ok = util_ok and f["429s"] == 0 and f["over"] and f["done"] == f["stations"]
    target = "no 429" if shape.slow else f"fetch phase at least {TARGET:.0%}, no 429"
    line = (f"rate {shape.rate:g}/s burst {shape.burst}, {shape.workers} workers: global limiter "
            f"{fetch['utilisation']:.1%} over the fetch phase, {f['429s']} 429s -> "
            f"{'meets' if ok else 'MISSES'} the target ({target})")
    if not (f["over"] and f["done"] == f["stations"]):
        line += f"; day {'over' if f['over'] else 'timed out'} with {f['done']} of {f['stations']} stations done"
    if fetch["span"] > 0:
        # The fastest the API itself lets n requests go, from a full bucket: (n - burst) / rate after the
        # first; what our limit (burst less its cushion, or a longer interval) allows: (n - burst') / rate'.
        n, enforced = fetch["requests"], f["enforced"]
        best, ours = max(0, n - shape.burst) / shape.rate, max(0, n - enforced["burst"]) / enforced["rate"]
        line += (f" | {n} requests in {fetch['span']:.2f} s: the API allows {best:.2f} s, our limit {ours:.2f} s; "
                 f"{fetch['allowance']:.1%} of the API's allowance; then {f['finished_at'] - f['last_request_at']:.2f} s "
                 f"of transform and persist (whole run {f['utilisation']:.1%})")
    return ok, line


def shapes_table(rows: list[tuple[Shape, dict[str, dict]]]) -> str:
    lines = [("rate/s", "burst", "workers", "stations",
              *[f"{name} {column}" for name in SHAPE_LOOPS for column in ("fetch", "run", "429s")])]
    for shape, results in rows:
        cells = []
        for name in SHAPE_LOOPS:
            f = results[name]
            cells += [f"{paced(shape, f)['utilisation']:.1%}",
                      f"{f['utilisation']:.1%}" + ("" if f["over"] else " (timed out)"), str(f["429s"])]
        stations = next(iter(results.values()))["stations"]
        lines.append((f"{shape.rate:g}", str(shape.burst), str(shape.workers), str(stations), *cells))
    return aligned(lines)


def run_shapes(settings: settings_mod.Settings, seconds: float, max_batch: int, timeout: float,
               only: list[Shape] | None = None) -> int:
    """Both loops at every shape, workers started once per worker count; prints the table and verdicts."""
    todo = only or shapes()
    most = max(shape.requests(seconds) for shape in todo) * max_batch
    try:
        config = ApiConfig.from_settings(settings).changed({
            "stations": max(most, settings.api_stations), "rate": todo[0].rate, "burst": todo[0].burst,
            "max_batch": max_batch, "error_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0})
    except ValueError as why:
        raise SystemExit(f"python -m ch04_rate_limits.bench: error: {why}") from None
    logs = tempfile.mkdtemp(prefix="ch04-bench-logs-")
    rows: list[tuple[Shape, dict[str, dict]]] = []
    started = time.monotonic()
    # One API for every shape: the workers read its URL from their environment when they start.
    with provide_redis(settings) as provided, ApiServer(config, host="127.0.0.1", port=0) as api:
        use_redis(provided.url)
        r = provided.client()
        os.environ.update(API_URL=api.url, API_KEY=config.key, API_MAX_BATCH=str(max_batch))
        print(f"Stations API: no faults, max batch {max_batch}; {len(todo)} shapes, each day the burst plus "
              f"{seconds:g} s of requests at the rate ({SLOW_SECONDS:g} s at {SLOW_SHAPE[0]:g}/s burst "
              f"{SLOW_SHAPE[1]}), full batches; day {settings.day}; worker logs in {logs}", flush=True)
        for count in dict.fromkeys(shape.workers for shape in todo):
            os.environ[WINDOW_ENV] = str(count)   # a batch in flight per worker process (read at each kick)
            group = workers("ch04_rate_limits.app", logs, count).start()
            try:
                for shape in (s for s in todo if s.workers == count):
                    # The limit every kick publishes (read here, in the kick): the workers get it through Redis.
                    os.environ.update(API_RATE=f"{shape.rate:g}", API_BURST=str(shape.burst))
                    ids = answer_key.station_ids(shape.requests(seconds) * max_batch)
                    results = {}
                    for name, loop_name in SHAPE_LOOPS.items():
                        print(f"rate {shape.rate:g}/s burst {shape.burst}, {count} workers, {len(ids)} stations: "
                              f"{name} ...", flush=True)
                        results[name] = loop_day(r, api, settings_mod.load(), ids, timeout, loop_name,
                                                 {"rate": shape.rate, "burst": shape.burst})
                        if not results[name]["over"]:   # its tasks may still run: fresh workers, empty queue
                            pipeline.LOOPS[loop_name].stop(r, settings.day.isoformat(), "timed out in the bench")
                            group.stop()
                            ch04_app.control.purge()
                            group = workers("ch04_rate_limits.app", logs, count).start()
                    rows.append((shape, results))
            finally:
                group.stop()
    print()
    print(shapes_table(rows))
    print("\nutilisation: accepted requests per second divided by the API's rate, over the fetch phase (first "
          "API request to the last: 'fetch') and over the whole run (first request until the day is over: 'run', "
          "the last stations' transform and persist included); a day starts with the API's burst, so either can "
          "pass 100% where the burst is large against the rate. Workers: prefork, one pool process each, as many "
          "batches in flight.")
    missed = 0
    for shape, results in rows:
        ok, line = verdict(shape, results["global limiter"])
        missed += not ok
        print(line)
    print(f"\n{len(rows) - missed} of {len(rows)} shapes meet the target; {time.monotonic() - started:.0f} s in all")
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch04_rate_limits.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=400, help="stations in the day (default 400)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second the API allows (default 10)")
    parser.add_argument("--burst", type=int, default=10, help="the API's burst (default 10)")
    parser.add_argument("--max-batch", type=int, default=5, help="the API's maximum batch (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each pipeline may take (default 120)")
    parser.add_argument("--skip-periodic", action="store_true", help="leave chapter 1's pipeline out")
    parser.add_argument("--out", type=Path, default=None, help="a folder for limits.json (the figures)")
    parser.add_argument("--shapes", action="store_true",
                        help="both loops at every rate, burst and worker count, in one table (see above)")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="with --shapes: seconds of requests at the rate in each day, after the burst (default 6)")
    args = parser.parse_args(argv)
    if args.shapes:
        if not args.seconds > 0:
            parser.error("--seconds must be above 0")
        return run_shapes(settings, args.seconds, args.max_batch, args.timeout)
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    try:
        config = ApiConfig.from_settings(settings).changed({
            "stations": max(args.stations, settings.api_stations), "rate": args.rate, "burst": args.burst,
            "max_batch": args.max_batch, "error_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0})
    except ValueError as why:
        parser.error(str(why))
    # The limit the API publishes, as every pipeline reads it (and the workers, started below, inherit it).
    os.environ.update(API_RATE=f"{config.rate:g}", API_BURST=str(config.burst), API_MAX_BATCH=str(config.max_batch))
    ids = answer_key.station_ids(args.stations)
    logging.getLogger("celery.app.trace").setLevel(logging.CRITICAL)   # chapter 1's runs fail loudly, on purpose
    runners = {"global limiter": lambda *a: run_loop(*a, loop_name="global", log_dir=logs),
               "Celery rate_limit": lambda *a: run_loop(*a, loop_name="per-worker", log_dir=logs),
               "periodic (ch01)": lambda *a: run_periodic(*a, log_dir=logs)}
    if args.skip_periodic:
        del runners["periodic (ch01)"]
    logs = tempfile.mkdtemp(prefix="ch04-bench-logs-")
    with provide_redis(settings) as provided:
        use_redis(provided.url)
        r = provided.client()
        print(f"Stations API: rate {config.rate:g}/s, burst {config.burst}, max batch {config.max_batch}, no faults; "
              f"{len(ids)} stations, day {settings.day}; {WORKERS} worker processes (prefork, 1 pool process each)")
        print(f"loops: batches of {config.max_batch}, {pipeline.LOOP.width()} in flight | periodic: a slice of "
              f"{settings.slice_size} every {settings.beat_interval:g} s, one request per station | "
              f"worker logs in {logs}")
        results = side_by_side(r, config, runners, ids, args.timeout)
    print()
    print(table(results))
    print(utilisation_note(config))
    best = results["global limiter"]
    verdict = best["utilisation"] >= 0.95 and best["429s"] == 0
    print(f"global limiter: utilisation {best['utilisation']:.0%}, {best['429s']} 429s -> "
          f"{'meets' if verdict else 'MISSES'} the target (at least 95% with no 429)")
    write_figures(args.out, "limits", {"api": config.as_dict(), "workers": WORKERS, "results": results})
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
