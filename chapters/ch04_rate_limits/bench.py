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
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from ch01_periodic import pipeline as periodic, runs
from ch01_periodic.app import app as periodic_app, beat_schedule as periodic_schedule
from ch02_segmented import database
from ch03_signals import pipeline as ch03_pipeline
from ch03_signals.benchmark import figures, side_by_side, table, utilisation_note
from workshop import settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import provide_redis
from workshop.workers import EmbeddedBeat, WorkerProcesses

from . import pipeline

WORKERS = 2


def workers(app_module: str, log_dir: str) -> WorkerProcesses:
    return WorkerProcesses(app_module, WORKERS, pool="prefork", concurrency=1, loglevel="WARNING", log_dir=log_dir)


def run_loop(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float,
             loop_name: str, log_dir: str) -> dict:
    loop, day = pipeline.LOOPS[loop_name], settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.reset_limits(r)                          # the bench alone calls this API: a fresh limiter
    with tempfile.TemporaryDirectory(prefix="ch04-bench-") as folder, workers("ch04_rate_limits.app", log_dir):
        ch03_pipeline.discover(day, len(ids))
        api.reset()                                   # zero the counts, full bucket: the run starts now
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.kick(r, day, db=db, loop=loop)
        over = loop.wait(r, day, timeout)
        finished = time.time()
        summaries = {row["station"]: row for row in database.rows(db, day)}
    return figures(api.stats(), summaries, ids, day, finished, over)


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


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch04_rate_limits.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=400, help="stations in the day (default 400)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second the API allows (default 10)")
    parser.add_argument("--burst", type=int, default=10, help="the API's burst (default 10)")
    parser.add_argument("--max-batch", type=int, default=5, help="the API's maximum batch (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each pipeline may take (default 120)")
    parser.add_argument("--skip-periodic", action="store_true", help="leave chapter 1's pipeline out")
    args = parser.parse_args(argv)
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
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
