"""Chapter 1's periodic pipeline and this chapter's loop, on the same day, side by side.

    PYTHONPATH=solutions python -m ch03_signals.benchmark [--stations 300] [--error-rate 0.05]
    make bench-loop

Each pipeline gets the same stations, the same fault profile and the same rate
limit (a fresh fake API with the same configuration, on 127.0.0.1), the same
worker (two threads), and its own defaults otherwise: chapter 1 takes a slice of
SLICE_SIZE stations every BEAT_INTERVAL seconds and calls the API once per
station; the loop sends batches of BATCH_SIZE, one after the other. Both are
measured from the outside with chapter 1's `measure`: the API's own counts and
the stored results against the answer key.

Wall time runs from the pipeline's first API request until it is over (the
schedule went round / the loop ran out of work). Not a test: it prints figures.
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

from ch01_periodic import measure, pipeline as periodic, runs
from ch01_periodic.app import app as periodic_app, beat_schedule
from ch02_segmented import database
from workshop import settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import provide_redis
from workshop.workers import EmbeddedBeat, EmbeddedWorker

from . import pipeline as looped
from .app import app as looped_app

CONCURRENCY = 2   # worker threads, for both


def run_periodic(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float) -> dict:
    day = settings.day.isoformat()
    periodic.reset(r, day)
    periodic.plan_day(r, day, ids)
    api.reset()                                   # zero the counts, full bucket, fresh fault sequence
    periodic_app.conf.beat_schedule = beat_schedule(settings)
    with EmbeddedWorker(periodic_app, pool="threads", concurrency=CONCURRENCY), \
            EmbeddedBeat(periodic_app, max_interval=min(1.0, settings.beat_interval / 4)):
        over = runs.wait(r, day, timeout)
        finished = time.time()
    return figures(api.stats(), periodic.summaries(r, day), ids, day, finished, over)


def run_looped(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float) -> dict:
    day = settings.day.isoformat()
    looped.reset(r, day)
    looped.discover(day, len(ids))
    api.reset()
    with tempfile.TemporaryDirectory(prefix="ch03-bench-") as folder, \
            EmbeddedWorker(looped_app, pool="threads", concurrency=CONCURRENCY):
        db = str(Path(folder) / "summaries.sqlite3")
        looped.kick(r, day, db=db)
        over = looped.LOOP.wait(r, day, timeout)
        finished = time.time()
        summaries = {row["station"]: row for row in database.rows(db, day)}
    return figures(api.stats(), summaries, ids, day, finished, over)


def figures(stats: dict, summaries: dict, ids: list[str], day: str, finished: float, over: bool) -> dict:
    wall = finished - stats["first_request_at"] if stats["first_request_at"] else 0.0
    row = measure.figures(stats, summaries, ids, day, seconds=wall)
    return {**row, "stations/s": row["done"] / wall if wall else 0.0,
            "twice": len(measure.fetched_more_than_once(stats)), "over": over}


def side_by_side(r, config: ApiConfig, runners: dict, ids: list[str], timeout: float) -> dict[str, dict]:
    """Each pipeline in turn, each against a fresh API of the same configuration: their figures by name."""
    results = {}
    for name, run in runners.items():
        with ApiServer(config, host="127.0.0.1", port=0) as api:
            os.environ["API_URL"], os.environ["API_KEY"] = api.url, config.key
            print(f"running {name} ...", flush=True)
            results[name] = run(r, api, settings_mod.load(), ids, timeout)
    return results


def utilisation_note(config: ApiConfig) -> str:
    return (f"\nutilisation: accepted requests per second over the wall time, divided by the API's rate "
            f"({config.rate:g}/s); a short run can pass 100% on the burst ({config.burst} requests up front).")


def table(results: dict[str, dict]) -> str:
    lines = [("", *results)]
    for label, show in (
            ("wall time (s)", lambda f: f"{f['seconds']:.1f}" + ("" if f["over"] else " (timed out)")),
            ("stations/s", lambda f: f"{f['stations/s']:.1f}"),
            ("API utilisation", lambda f: f"{f['utilisation']:.0%}"),
            ("stations done", lambda f: f"{f['done']} of {f['stations']}"),
            ("stations done twice", lambda f: str(f["twice"])),
            ("stations missing", lambda f: str(f["missing"])),
            ("stations wrong", lambda f: str(f["wrong"])),
            ("API requests", lambda f: f"{f['requests']} ({f['accepted']} accepted)"),
            ("429s / 5xx", lambda f: f"{f['429s']} / {f['errors']}")):
        lines.append((label, *(show(f) for f in results.values())))
    return aligned(lines, left=1)


def aligned(rows, left: int = 0) -> str:
    """Rows of cells (str) as text columns two spaces apart: the first `left` columns flush left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < left else cell.rjust(w)
                                for i, (cell, w) in enumerate(zip(row, widths))) for row in rows)


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch03_signals.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=300, help="stations in the day (default 300)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of API requests that fail (default 0.05)")
    parser.add_argument("--rate", type=float, default=settings.api_rate,
                        help=f"requests per second the API allows (default API_RATE, {settings.api_rate:g})")
    parser.add_argument("--burst", type=int, default=None, help="the API's burst (default API_BURST, else the rate)")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each pipeline may take (default 120)")
    args = parser.parse_args(argv)
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    # Without --burst: API_BURST's, or one second's worth of the rate, as the API's own default.
    burst = args.burst or (settings.effective_api_burst if args.rate == settings.api_rate else math.ceil(args.rate))
    try:
        config = ApiConfig.from_settings(settings).changed({"stations": max(args.stations, settings.api_stations),
                                                            "error_rate": args.error_rate, "rate": args.rate,
                                                            "burst": burst})
    except ValueError as why:
        parser.error(str(why))
    ids = answer_key.station_ids(args.stations)
    logging.getLogger("celery.app.trace").setLevel(logging.CRITICAL)   # chapter 1's runs fail loudly, on purpose
    with provide_redis(settings) as provided:
        use_redis(provided.url)
        r = provided.client()
        print(f"Stations API: rate {config.rate:g}/s, burst {config.burst}, max batch {config.max_batch}, "
              f"error rate {config.error_rate:g}, seed {config.seed}; {len(ids)} stations, day {settings.day}")
        print(f"periodic (ch01): a slice of {settings.slice_size} every {settings.beat_interval:g} s, one request "
              f"per station | looped (ch03): batches of {min(settings.batch_size, config.max_batch)}, one after "
              f"the other | {CONCURRENCY} worker threads each")
        results = side_by_side(r, config, {"periodic (ch01)": run_periodic, "looped (ch03)": run_looped},
                               ids, args.timeout)
    print()
    print(table(results))
    print(utilisation_note(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
