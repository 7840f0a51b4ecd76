"""Does the loop cost the same per batch on a day of 100,000 stations as on one of 1,000?

    PYTHONPATH=solutions python -m ch04_rate_limits.bench_scale [--sizes 1000,10000,100000]
    make bench-scale

Chapter 4's loop, unthrottled (an API limit far above what two cores can ask,
batches of 50, a window of two), on two real worker processes (prefork, one pool
process each), at each size in turn. Beside it, in the same run and on the same
workers: Celery's raw ceiling, a no-op task that sends itself again from
`task_success` exactly as the loop sends its next batch (two such chains, one
per worker), and the fake API's own capacity for batches of 50 (its own process,
four clients: `workshop bench-api`'s measurement). Printed:

- per size: wall time (first API request to the loop's end), stations/s, loop
  turns (every message the loop's chains ran: fetch, transform, persist, the
  lead's wait), ms per batch of 50 (wall time / fetch batches), and whether the
  day equals the answer key; then the ratio of ms per batch at the largest size
  to the smallest (target: at most 1.3, a linear cost);
- loop turns/s / raw tasks/s, and loop stations/s / API stations/s; and so what
  one turn costs a worker against one raw no-op task (`--batch 1` makes a turn's
  own work, one station, as small as it gets: what is left is the loop's cost);
- Redis's own time per command (INFO commandstats, reset before each size):
  the top commands by server time, per size, so a command that grows with the
  day's size shows as a growing microseconds-per-call.

Not a test: it prints figures (the linear cost is tested, by counting, in
tests/test_ch04_scale.py).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from celery.signals import task_success

from ch02_segmented import pipeline as segment_pipeline
from ch03_signals import pipeline as ch03_pipeline
from ch03_signals.benchmark import aligned, figures
from workshop import api_bench, settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import redis_client, use_redis
from workshop.redis_provider import provide_redis
from workshop.workers import WorkerProcesses

from . import limiter, pipeline
from .app import app

BATCH = 50
WORKERS = 2
UNTHROTTLED = limiter.Limit(1_000_000, 1_000_000)   # far above what two cores can ask of the API
RAW_DONE = "bench:scale:raw:done"                  # one entry per raw chain that ran to its end


# ---------------------------------------------------------------- Celery's raw ceiling

@app.task(name="ch04_rate_limits.bench_scale.noop")
def noop(left: int) -> int:
    """Nothing: what a turn would cost if the loop did no work at all."""
    return left


def _send_next(sender, result=None, **_) -> None:
    """task_success of a no-op, in the pool process: send the chain's next one, as the loop does."""
    if result and result > 1:
        noop.apply_async((result - 1,), headers={"bench": "raw"})
    else:
        redis_client().rpush(RAW_DONE, time.time())


task_success.connect(_send_next, sender=noop, weak=False, dispatch_uid="bench_scale:noop")


def raw_ceiling(r, tasks_per_chain: int, timeout: float) -> float:
    """Raw no-op tasks per second over two self-sending chains (one per worker)."""
    r.delete(RAW_DONE)
    started = time.time()
    for _ in range(WORKERS):
        noop.apply_async((tasks_per_chain,), headers={"bench": "raw"})
    deadline = time.monotonic() + timeout
    while r.llen(RAW_DONE) < WORKERS:   # polled: a blocking pop would outlast the client's socket timeout
        if time.monotonic() > deadline:
            raise SystemExit(f"the raw no-op chains did not end within {timeout:g} s")
        time.sleep(0.05)
    return WORKERS * tasks_per_chain / (max(map(float, r.lrange(RAW_DONE, 0, -1))) - started)


# ---------------------------------------------------------------- the loop at one size

def run_size(r, api: ApiServer, stations: int, batch: int, timeout: float) -> dict:
    """A fresh day of the API's first `stations`, the loop until it ends: its figures."""
    day = settings_mod.load().day.isoformat()
    ids = answer_key.station_ids(stations)
    with tempfile.TemporaryDirectory(prefix="ch04-scale-") as folder:
        pipeline.reset(r, day)
        pipeline.reset_limits(r)
        ch03_pipeline.discover(day, stations)
        api.reset()                               # count from the loop's first request
        r.config_resetstat()
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.kick(r, day, db=db, limit=UNTHROTTLED)
        over = pipeline.LOOP.wait(r, day, timeout)
        finished = time.time()
        commands = r.info("commandstats")
        turns = sum(pipeline.LOOP.status(r, day)["chains"].values())
        summaries = {row["station"]: row for row in segment_pipeline.persisted_rows(r, day, db)}
        row = figures(api.stats(), summaries, ids, day, finished, over)
    batches = math.ceil(stations / batch)
    return {**row, "turns": turns, "ms/batch": 1000 * row["seconds"] / batches,
            "turns/s": turns / row["seconds"] if row["seconds"] else 0.0, "commandstats": commands}


def api_capacity(stations: int, batch: int, seconds: float = 3.0, clients: int = 4) -> float:
    """The fake API's readings per second at batches of `batch`, in its own process (workshop bench-api)."""
    process, url = api_bench.start_server(stations, max_batch=batch)
    try:
        phase = api_bench.run_phase(url, "/readings", clients=clients, seconds=seconds, max_requests=100_000,
                                    batch=batch, stations_count=stations)
    finally:
        api_bench.stop_server(process)
    return phase.rate * batch


# ---------------------------------------------------------------- printing

def size_table(results: dict[int, dict]) -> str:
    rows = [("stations", "wall s", "stations/s", "turns", "turns/s", "ms/batch", "answer key")]
    for stations, f in results.items():
        correct = f["done"] == stations and not f["missing"] and not f["wrong"] and f["over"]
        rows.append((f"{stations:,}", f"{f['seconds']:.1f}", f"{f['stations/s']:.0f}", f"{f['turns']:,}",
                     f"{f['turns/s']:.0f}", f"{f['ms/batch']:.1f}",
                     "equal" if correct else f"{f['done']} done, {f['missing']} missing, {f['wrong']} wrong"))
    return aligned(rows)


def commands_table(results: dict[int, dict], top: int = 8) -> str:
    """The commands that took Redis the most time at the largest size: µs per call and share, per size."""
    largest = results[max(results)]["commandstats"]
    names = sorted(largest, key=lambda name: -largest[name]["usec"])[:top]
    header = ["command"] + [f"{s:,}: µs/call  calls" for s in results]
    rows = [header]
    for name in names:
        cells = [name.removeprefix("cmdstat_")]
        for f in results.values():
            stat = f["commandstats"].get(name)
            cells.append(f"{stat['usec_per_call']:>6.1f} {stat['calls']:>9,}" if stat else "-")
        rows.append(cells)
    return aligned(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ch04_rate_limits.bench_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="stations per day, comma-separated")
    parser.add_argument("--raw-tasks", type=int, default=2000, help="no-op tasks per raw chain (default 2000)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"stations per API request (default {BATCH})")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds one size may take")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give whole numbers separated by commas, e.g. 1000,10000")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be from 1 to 1000 stations")
    if not sizes or sizes[0] < args.batch:
        parser.error(f"--sizes: each size must be at least one batch ({args.batch} stations)")
    settings = settings_mod.load()
    config = ApiConfig.from_settings(settings).changed({
        "rate": UNTHROTTLED.rate, "burst": UNTHROTTLED.burst, "max_batch": args.batch,
        "error_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0})
    # What the workers read at start: the batch size, the unthrottled limit.
    os.environ.update(API_RATE=f"{config.rate:g}", API_BURST=str(config.burst), API_MAX_BATCH=str(args.batch))
    logs = tempfile.mkdtemp(prefix="ch04-scale-logs-")
    print(f"{WORKERS} worker processes (prefork, 1 pool process each), window {pipeline.LOOP.width()}, "
          f"batches of {args.batch}, no API limit or faults; worker logs in {logs}", flush=True)
    results: dict[int, dict] = {}
    with provide_redis(settings) as provided, \
            ApiServer(config.changed({"stations": max(sizes)}), host="127.0.0.1", port=0) as api:
        use_redis(provided.url)
        os.environ["API_URL"], os.environ["API_KEY"] = api.url, config.key   # before the workers start
        r = provided.client()
        with WorkerProcesses("ch04_rate_limits.bench_scale", WORKERS, pool="prefork", concurrency=1,
                             loglevel="WARNING", log_dir=logs):
            for stations in sizes:
                print(f"loop, {stations:,} stations ...", flush=True)
                results[stations] = run_size(r, api, stations, args.batch, args.timeout)
            print(f"raw no-op chains, {WORKERS} x {args.raw_tasks} ...", flush=True)
            raw = raw_ceiling(r, args.raw_tasks, args.timeout)
    print(f"API capacity, batches of {args.batch} ...", flush=True)
    capacity = api_capacity(max(sizes), args.batch)
    print()
    print(size_table(results))
    first, last = results[sizes[0]], results[sizes[-1]]
    ratio = last["ms/batch"] / first["ms/batch"]
    print(f"\nms per batch at {sizes[-1]:,} / at {sizes[0]:,}: {ratio:.2f} (target at most 1.3: a linear cost)")
    print(f"raw Celery ceiling: {raw:.0f} no-op tasks/s | fake API capacity: {capacity:.0f} stations/s")
    for stations, f in results.items():
        print(f"  {stations:>7,}: loop turns/s / raw tasks/s = {f['turns/s'] / raw:.2f}   "
              f"loop stations/s / API stations/s = {f['stations/s'] / capacity:.2f}   "
              f"one turn = {raw / f['turns/s']:.1f} x a raw no-op task "
              f"({1000 * WORKERS / f['turns/s']:.1f} ms vs {1000 * WORKERS / raw:.1f} ms of a worker; target at most 2 x)")
    print("\nRedis's own time per command (INFO commandstats), top by time at the largest size:")
    print(commands_table(results))
    correct = all(f["done"] == s and f["over"] for s, f in results.items())
    return 0 if correct and ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
