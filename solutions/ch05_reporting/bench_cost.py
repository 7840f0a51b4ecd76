"""What a day costs: chapter 1's periodic pipeline, chapter 4's loop and this chapter's, on the same day.

    PYTHONPATH=solutions python -m ch05_reporting.bench_cost [--stations 300] [--error-rate 0.05]
    make bench-cost

Same stations, fault profile (5xx, and sensor glitches of every kind), rate limit
and price list, each pipeline against a fresh fake API on 127.0.0.1 and two
prefork workers of its own app:

- periodic (ch01): a slice every BEAT_INTERVAL seconds, one request per station;
- loop (ch04): batches as large as the API takes, paced by the global limiter;
- budget-aware (ch05): chapter 4's loop with the batch chosen from the price list,
  every call paid from the run's budget, quality rules at the boundary; once with
  no budget, once with a budget for 60 % of the day (it stops, nothing overspent).

The cost is the API's own bill for the run; "done" counts stations whose summary
equals the answer key (a spike averaged in is "wrong"). Not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ch02_segmented import database
from ch03_signals import benchmark, pipeline as ch03_pipeline
from ch04_rate_limits import bench as ch04_bench, dead_letters, keys as ch04_keys
from workshop import settings as settings_mod, stations as answer_key
from workshop.api import ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import provide_redis

from . import pipeline, prices, reporting, runs

PERIODIC, LOOP, AWARE, BUDGETED = "periodic (ch01)", "loop (ch04)", "budget-aware (ch05)", "60% budget (ch05)"
GLITCH_RATE = 0.02


def with_cost(f: dict, stats: dict, r, day: str | None = None) -> dict:
    cost = stats["bill"]["total_micro"]
    dead = len(dead_letters.dead_letters(r, ch04_keys.for_day(day))) if day else 0
    return {**f, "cost": cost, "dead": dead, "per_done": cost / f["done"] if f["done"] else None}


def run_periodic(r, api: ApiServer, settings, ids, timeout, log_dir) -> dict:
    f = ch04_bench.run_periodic(r, api, settings, ids, timeout, log_dir)
    return with_cost(f, api.stats(), r)


def run_ch04(r, api: ApiServer, settings, ids, timeout, log_dir) -> dict:
    f = ch04_bench.run_loop(r, api, settings, ids, timeout, "global", log_dir)
    return with_cost(f, api.stats(), r, settings.day.isoformat())


def run_ch05(r, api: ApiServer, settings, ids, timeout, log_dir, share: float | None = None) -> dict:
    """One run of chapter 5's loop (a budget of `share` of the day's price, or none): figures, cost, report."""
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.ch04_pipeline.reset_limits(r)
    price = prices.Prices.published(settings)
    budget = None if share is None else share * price.to_finish(len(ids), pipeline.batch_size()) / prices.MICRO
    with ch04_bench.workers("ch05_reporting.app", log_dir), tempfile.TemporaryDirectory(prefix="ch05-bench-") as tmp:
        ch03_pipeline.discover(day, len(ids))
        api.reset()                                  # the run's calls only, as for the others: not the listing
        db = str(Path(tmp) / "summaries.sqlite3")
        pipeline.kick(r, day, db=db, budget=budget)
        run = runs.current(r, day)
        over = pipeline.LOOP.wait(r, day, timeout)
        finished = time.time()
        row = reporting.wait(r, run, timeout=30, db=db) if over else None
        summaries = {s["station"]: s for s in database.rows(db, day)} if Path(db).exists() else {}
        stats = api.stats()
    f = benchmark.figures(stats, summaries, ids, day, finished, over)
    return {**with_cost(f, stats, r, day), "budget": budget, "report": row}


def table(results: dict[str, dict]) -> str:
    lines = [("", *results)]
    for label, show in (
            ("stations done (right)", lambda f: f"{f['done']} of {f['stations']}"),
            ("summaries wrong", lambda f: str(f["wrong"])),
            ("missing", lambda f: str(f["missing"])),
            ("dead-lettered", lambda f: str(f["dead"])),
            ("API requests", lambda f: f"{f['requests']} ({f['429s']} 429s)"),
            ("cost (the API's bill)", lambda f: prices.money(f["cost"])),
            ("budget", lambda f: "-" if f.get("budget") is None else f"${f['budget']:.4f}"),
            ("cost per 1,000 done", lambda f: prices.money(1000 * f["per_done"]) if f["per_done"] else "-"),
            ("wall time (s)", lambda f: f"{f['seconds']:.1f}" + ("" if f["over"] else " (timed out)"))):
        lines.append((label, *(show(f) for f in results.values())))
    return benchmark.aligned(lines, left=1)


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch05_reporting.bench_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=300, help="stations in the day (default 300)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of API requests that fail (default 0.05)")
    parser.add_argument("--rate", type=float, default=settings.api_rate, help="the API's requests per second")
    parser.add_argument("--billed", choices=("2xx", "all"), default=settings.api_billed,
                        help="which answers the API bills (default API_BILLED, 2xx)")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each run may take")
    parser.add_argument("--out", type=Path, default=None, help="a folder for cost.json (the figures)")
    args = parser.parse_args(argv)
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    config = benchmark.api_config(settings, args.stations, args.error_rate, args.rate).changed(
        {"glitch_rate": GLITCH_RATE, "glitch_kinds": answer_key.GLITCH_KINDS, "billed": args.billed})
    ids = answer_key.station_ids(args.stations)
    # The pipeline pays by the published terms: the workers started below must read the API's own.
    os.environ["API_BILLED"] = args.billed
    with provide_redis(settings) as provided, tempfile.TemporaryDirectory(prefix="bench-cost-") as log_dir:
        use_redis(provided.url)
        r = provided.client()
        print(benchmark.describe(settings, config, ids).splitlines()[0])
        print(f"prices: {config.price_request:g} per request + {config.price_station:g} per station "
              f"({config.billed} billed); glitches {GLITCH_RATE:g} of hours, kinds {', '.join(config.glitch_kinds)}")
        runners = {PERIODIC: lambda *a: run_periodic(*a, log_dir), LOOP: lambda *a: run_ch04(*a, log_dir),
                   AWARE: lambda *a: run_ch05(*a, log_dir), BUDGETED: lambda *a: run_ch05(*a, log_dir, share=0.6)}
        results = benchmark.side_by_side(r, config, runners, ids, args.timeout)
    print()
    print(table(results))
    budgeted = results[BUDGETED]
    if budgeted.get("report"):
        row = budgeted["report"]
        print(f"\n60% budget: {row['outcome']}; billed {prices.money(budgeted['cost'])} of "
              f"${budgeted['budget']:.4f}, {row['pending']} stations left, finishing would cost "
              f"{prices.money(row['to_finish_micro'])}")
    benchmark.write_figures(args.out, "cost", {"api": config.as_dict(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
