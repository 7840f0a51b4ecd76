# Exercise copy of solutions/ch06_capstone/bench.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The capstone measured: periodic vs looped, scale-out, and what a Redis restart costs each pipeline.

    PYTHONPATH=solutions python -m ch06_capstone.bench [--stations 300] [--workers 1,2,4] [--out DIR]
    make bench-capstone

1. Side by side (side_by_side.py): chapter 1's periodic pipeline and chapter 5's
   loop on the same day, fault profile (5xx), API limit and price list.
2. Scale out (scale_out.py): 1, 2 and 4 worker processes under the API's limit
   and unthrottled, every request with the API's round trip.
3. Redis restarted mid-run (restart.py): the naive pipeline and chapter 5's loop,
   each on a redis-server of its own with the append-only file on.

Each pipeline meets a fresh fake API on 127.0.0.1 and real prefork workers. With
`--out DIR` the figures go to DIR/capstone.json and the plots to
DIR/done_over_time.png and DIR/scale_out.png. Not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ch03_signals import benchmark
from workshop import settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import provide_redis

from . import plots, restart, scale_out, side_by_side

RESTART_STATIONS = 1000


def restart_table(rows: list[dict]) -> str:
    lines = [("", *(row["pipeline"] for row in rows))]
    for label, show in (
            ("stations", lambda f: str(f["stations"])),
            ("Redis down (s)", lambda f: f"{f['down']:.1f}"),
            ("stored at the end", lambda f: str(f["stations"] - f["missing"])),
            ("missing", lambda f: str(f["missing"])),
            ("messages left unacknowledged", lambda f: str(f["stranded"])),
            ("  stations they carry", lambda f: str(len(f["stranded_stations"])) if "stranded_stations" in f else "-"),
            ("stations fetched twice", lambda f: str(f["fetched_twice"])),
            ("watchdog restarts", lambda f: str(f["watchdog_restarts"]) if "watchdog_restarts" in f else "-")):
        lines.append((label, *(show(f) for f in rows)))
    return benchmark.aligned(lines, left=1)


def restart_api(settings: settings_mod.Settings) -> ApiConfig:
    """restart.FAST_API, with the stations of the restart's day."""
    return ApiConfig.from_settings(settings).changed({
        **restart.FAST_API, "stations": max(RESTART_STATIONS, settings.api_stations), "max_batch": 50})


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--workers takes worker counts from 1 up, comma-separated (e.g. 1,2,4), "
                                         f"got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch06_capstone.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=300, help="stations in the side-by-side day (default 300)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of API requests that fail (default 0.05)")
    parser.add_argument("--rate", type=float, default=settings.api_rate, help="the API's requests per second")
    parser.add_argument("--max-batch", type=int, default=5,
                        help="the API's largest batch (default 5: the loop's day outlasts the API's burst)")
    parser.add_argument("--workers", type=parse_counts, default=scale_out.COUNTS,
                        help="worker counts to scale out to (default 1,2,4)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="seconds of requests at the rate in each scale-out day, after the burst (default 4)")
    parser.add_argument("--skip-restart", action="store_true", help="leave the Redis restart runs out")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each run may take")
    parser.add_argument("--out", type=Path, default=None, help="a folder for capstone.json and the plots")
    args = parser.parse_args(argv)
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    if args.max_batch < 1:
        parser.error("--max-batch must be at least 1")
    if not args.seconds > 0:
        parser.error("--seconds must be above 0")
    try:
        config = benchmark.api_config(settings, args.stations, args.error_rate, args.rate).changed(
            {"max_batch": args.max_batch})
    except ValueError as why:
        parser.error(str(why))
    ids = answer_key.station_ids(args.stations)
    limited = {"rate": config.rate, "burst": 5}
    started, figures = time.monotonic(), {}
    with provide_redis(settings) as provided, tempfile.TemporaryDirectory(prefix="bench-capstone-") as logs:
        use_redis(provided.url)
        r = provided.client()
        print(benchmark.describe(settings, config, ids).splitlines()[0])
        results = side_by_side.run(r, config, ids, args.timeout, logs)
        print()
        print(side_by_side.table(results))
        periodic = results[side_by_side.PERIODIC]
        print(f"\nthe periodic side: {periodic['runs']} runs, {periodic['runs_failed']} ended by a failed request "
              f"({periodic['429s']} 429s, {periodic['errors']} 5xx), the rest of their slice never done: its run log "
              f"predicts {periodic['predicted_missing']} stations missing, {periodic['missing']} are")
        figures["side_by_side"] = results

        scale = ApiConfig.from_settings(settings).changed({
            "stations": 10_000, "max_batch": args.max_batch, "error_rate": 0.0, "slow_rate": 0.0,
            "malformed_rate": 0.0})
        with ApiServer(scale, host="127.0.0.1", port=0) as api:
            os.environ.update(API_URL=api.url, API_KEY=scale.key)
            print(f"\nscale out: batches of {args.max_batch}, {scale_out.LATENCY * 1000:g} ms per request at the API, "
                  f"{', '.join(map(str, args.workers))} worker processes", flush=True)
            rows = scale_out.run(r, api, limited, args.seconds, args.max_batch, args.timeout, logs, args.workers)
        print()
        print(scale_out.table(rows, limited))
        print("\nutilisation (fetch): accepted requests/s from the first request to the last, over the API's rate; "
              "the burst lets a short day pass 100%.")
        figures["scale_out"] = {"limited": limited, "rows": rows}

        if not args.skip_restart:
            fast = restart_api(settings)
            with ApiServer(fast, host="127.0.0.1", port=0) as api:
                os.environ.update(API_URL=api.url, API_KEY=fast.key)
                print(f"\nRedis (append-only) restarted a third into a day of {RESTART_STATIONS} stations, "
                      f"{restart.WORKERS} workers ...", flush=True)
                naive = restart.naive_day(api, RESTART_STATIONS, logs, timeout=args.timeout)
                api.reset()
                looped = restart.looped_day(api, RESTART_STATIONS, logs, timeout=args.timeout)
            print()
            print(restart_table([naive, looped]))
            carried = len(set(naive["missing_stations"]) & set(naive["stranded_stations"]))
            print(f"\n{carried} of the naive pipeline's {naive['missing']} missing stations sit in unacknowledged "
                  f"messages Redis gives back after the visibility timeout ({naive['visibility_timeout']:g} s); "
                  f"restarting its workers stored {naive['stored_after_worker_restart'] - naive['stored']} more")
            figures["restart"] = [naive, looped]
    benchmark.write_figures(args.out, "capstone", figures)
    if args.out:
        plots.done_over_time(results).savefig(args.out / "done_over_time.png", dpi=110)
        plots.scale_out(rows, limited).savefig(args.out / "scale_out.png", dpi=110)
        print(f"\nfigures and plots in {args.out}")
    print(f"{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
