# Exercise copy of solutions/ch03_signals/benchmark.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 1's periodic pipeline, chapter 2's segments on beat and this chapter's loop, on the same day.

    PYTHONPATH=solutions python -m ch03_signals.benchmark [--stations 300] [--error-rate 0.05]
    make bench-loop

Three pipelines, so that two effects show apart:

- periodic (ch01): a slice of SLICE_SIZE stations every BEAT_INTERVAL seconds,
  one API request per station;
- segments on beat (ch02): every segment's entry task every BEAT_INTERVAL
  seconds (chapter 2's beat schedule), fetching in batches of BATCH_SIZE, the
  loop's batch size; discover lists the stations again on every tick, as
  chapter 2's schedule does;
- looped (ch03): batches of BATCH_SIZE, each sent by the end of the one before.

ch01 -> ch02 is *batching* (both wait for a timer); ch02 -> ch03 is
*self-triggering* (same batches, no timer). Each pipeline gets the same
stations, the same fault profile and the same rate limit (a fresh fake API with
the same configuration, on 127.0.0.1) and the same worker (two threads). All
three are measured from the outside with chapter 1's `measure`: the API's own
counts and the stored results against the answer key.

Wall time runs from the pipeline's first API request until it is over (the
schedule went round / every station is persisted / the loop ran out of work).
Not a test: it prints figures and their ratios.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from ch01_periodic import measure, pipeline as periodic, runs
from ch01_periodic.app import app as periodic_app, beat_schedule
from ch02_segmented import database, keys as segment_keys, stages
from ch02_segmented.app import app as segmented_app, beat_schedule as segmented_schedule
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


def run_segmented(r, api: ApiServer, settings: settings_mod.Settings, ids: list[str], timeout: float) -> dict:
    """Chapter 2's four segments on beat, each tick every segment, at the loop's batch size; over once all persist."""
    k = segment_keys.for_day(settings.day)
    looped.reset(r, k.day)                        # chapter 2's keys of the day (and the loop's)
    api.reset()
    with tempfile.TemporaryDirectory(prefix="ch02-bench-") as folder:
        db = str(Path(folder) / "summaries.sqlite3")
        # Chapter 2's schedule; its entry tasks take their arguments from it: the day's stations, the batch size
        # of the loop, the database file (chapter 2 runs them without, on the settings' defaults).
        options = {"discover": {"limit": len(ids)}, "fetch": {"batch_size": looped_batch(settings, api.config)},
                   "persist": {"db": db}}
        schedule = segmented_schedule(settings)
        for entry in schedule.values():
            entry["kwargs"] = {"day": k.day, **options.get(entry["task"].split(".")[1], {})}
        segmented_app.conf.beat_schedule = schedule
        with EmbeddedWorker(segmented_app, pool="threads", concurrency=CONCURRENCY), \
                EmbeddedBeat(segmented_app, max_interval=min(1.0, settings.beat_interval / 4)):
            deadline, over = time.monotonic() + timeout, False
            while not over and time.monotonic() < deadline:
                over = stages.count(r, k.persisted) >= len(ids)
                time.sleep(0.05)
            finished = time.time()
        summaries = {row["station"]: row for row in database.rows(db, k.day)} if Path(db).exists() else {}
    return figures(api.stats(), summaries, ids, k.day, finished, over)


def looped_batch(settings: settings_mod.Settings, config: ApiConfig) -> int:
    """The batch size the loop sends (BATCH_SIZE, at most the API's maximum); chapter 2 is given the same."""
    return min(settings.batch_size, config.max_batch)


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


PERIODIC, SEGMENTED, LOOPED = "periodic (ch01)", "segments on beat (ch02)", "looped (ch03)"
RUNNERS = {PERIODIC: run_periodic, SEGMENTED: run_segmented, LOOPED: run_looped}


def side_by_side(r, config: ApiConfig, runners: dict, ids: list[str], timeout: float) -> dict[str, dict]:
    """Each pipeline in turn, each against a fresh API of the same configuration: their figures by name.

    API_URL and API_KEY point at each run's API meanwhile, and are given back after (a notebook's own API);
    the tracebacks of chapter 1's failing runs are not logged meanwhile (the table counts them)."""
    results = {}
    trace = logging.getLogger("celery.app.trace")   # chapter 1's runs fail loudly, on purpose: not here
    level = trace.level
    trace.setLevel(logging.CRITICAL)
    try:
        with settings_mod.environment(restore=("API_URL", "API_KEY")):
            for name, run in runners.items():
                with ApiServer(config, host="127.0.0.1", port=0) as api:
                    os.environ["API_URL"], os.environ["API_KEY"] = api.url, config.key
                    print(f"running {name} ...", flush=True)
                    results[name] = run(r, api, settings_mod.load(), ids, timeout)
    finally:
        trace.setLevel(level)
    return results


def api_config(settings: settings_mod.Settings, stations: int, error_rate: float, rate: float | None = None,
               burst: int | None = None) -> ApiConfig:
    """The fake API every pipeline of the comparison meets; rate and burst default to API_RATE and API_BURST.

    Without a burst: API_BURST's, or one second's worth of the rate, as the API's own default. ValueError
    says which value is wrong."""
    rate = settings.api_rate if rate is None else rate
    burst = burst or (settings.effective_api_burst if rate == settings.api_rate else math.ceil(rate))
    return ApiConfig.from_settings(settings).changed({"stations": max(stations, settings.api_stations),
                                                      "error_rate": error_rate, "rate": rate, "burst": burst})


def describe(settings: settings_mod.Settings, config: ApiConfig, ids: list[str]) -> str:
    """What the comparison runs, in three lines."""
    batch = looped_batch(settings, config)
    return (f"Stations API: rate {config.rate:g}/s, burst {config.burst}, max batch {config.max_batch}, "
            f"error rate {config.error_rate:g}, seed {config.seed}; {len(ids)} stations, day {settings.day}\n"
            f"{PERIODIC}: a slice of {settings.slice_size} every {settings.beat_interval:g} s, one request per "
            f"station | {SEGMENTED}: every segment every {settings.beat_interval:g} s, batches of {batch}\n"
            f"{LOOPED}: batches of {batch}, each sent when the one before ends | {CONCURRENCY} worker threads each")


def utilisation_note(config: ApiConfig) -> str:
    return (f"\nutilisation: accepted requests per second over the wall time, divided by the API's rate "
            f"({config.rate:g}/s); a short run can pass 100% on the burst ({config.burst} requests up front).")


def ratios(results: dict[str, dict]) -> str:
    """Stations per second, each step against the one before: batching, then self-triggering, then both."""
    def speedup(slow: str, fast: str) -> str:
        before, after = results[slow]["stations/s"], results[fast]["stations/s"]
        return f"x {after / before:.1f}" if before else "n/a (nothing done)"

    steps = [("batching", PERIODIC, SEGMENTED), ("self-triggering", SEGMENTED, LOOPED), ("both", PERIODIC, LOOPED)]
    return aligned([(f"{what}:", f"{slow.split()[-1].strip('()')} -> {fast.split()[-1].strip('()')}", "stations/s", speedup(slow, fast))
                    for what, slow, fast in steps if slow in results and fast in results], left=3)


ROWS = (   # (label, figures -> cell): the comparison's rows; a later chapter adds its own
    ("wall time (s)", lambda f: f"{f['seconds']:.1f}" + ("" if f["over"] else " (timed out)")),
    ("stations/s", lambda f: f"{f['stations/s']:.1f}"),
    ("API utilisation", lambda f: f"{f['utilisation']:.0%}"),
    ("stations done", lambda f: f"{f['done']} of {f['stations']}"),
    ("stations done twice", lambda f: str(f["twice"])),
    ("stations missing", lambda f: str(f["missing"])),
    ("stations wrong", lambda f: str(f["wrong"])),
    ("API requests", lambda f: f"{f['requests']} ({f['accepted']} accepted)"),
    ("429s / 5xx", lambda f: f"{f['429s']} / {f['errors']}"),
)


def table(results: dict[str, dict], rows=ROWS) -> str:
    lines = [("", *results)]
    for label, show in rows:
        lines.append((label, *(show(f) for f in results.values())))
    return aligned(lines, left=1)


def aligned(rows, left: int = 0) -> str:
    """Rows of cells (str) as text columns two spaces apart: the first `left` columns flush left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < left else cell.rjust(w)
                                for i, (cell, w) in enumerate(zip(row, widths))) for row in rows)


def write_figures(out: Path | None, name: str, figures: dict) -> None:
    """With `--out DIR`: the figures as DIR/name.json, for the slides' `make figures` (numbers on a slide come
    from such a file, never typed in)."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
        print(f"\nfigures in {out / f'{name}.json'}")


def main(argv: list[str] | None = None) -> int:
    settings = settings_mod.load()
    parser = argparse.ArgumentParser(prog="python -m ch03_signals.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=300, help="stations in the day (default 300)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of API requests that fail (default 0.05)")
    parser.add_argument("--rate", type=float, default=settings.api_rate,
                        help=f"requests per second the API allows (default API_RATE, {settings.api_rate:g})")
    parser.add_argument("--burst", type=int, default=None, help="the API's burst (default API_BURST, else the rate)")
    parser.add_argument("--timeout", type=float, default=120.0, help="most seconds each of the three may take (default 120)")
    parser.add_argument("--out", type=Path, default=None, help="a folder for loop.json (the figures)")
    args = parser.parse_args(argv)
    if args.stations < 1:
        parser.error("--stations must be at least 1")
    try:
        config = api_config(settings, args.stations, args.error_rate, args.rate, args.burst)
    except ValueError as why:
        parser.error(str(why))
    ids = answer_key.station_ids(args.stations)
    with provide_redis(settings) as provided:
        use_redis(provided.url)
        r = provided.client()
        print(describe(settings, config, ids))
        results = side_by_side(r, config, RUNNERS, ids, args.timeout)
    print()
    print(table(results))
    print()
    print(ratios(results))
    print(utilisation_note(config))
    write_figures(args.out, "loop", {"api": config.as_dict(), "batch": looped_batch(settings, config),
                                     "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
