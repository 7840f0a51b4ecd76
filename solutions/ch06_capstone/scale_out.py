"""Scale out: 1, 2 and 4 worker processes, under the API's limit and unthrottled.

Chapter 4's loop (chapter 5's paces the same way: its limiter is chapter 4's) on
real prefork workers, one pool process each and a batch in flight per worker
(CH04_WINDOW). Every request waits `latency` seconds at the API, as a real API's
round trip does: that is what more workers overlap.

- under the limit: the global limiter in Redis paces every worker together, so
  the API's rate is used up (utilisation over the fetch phase, first request to
  last) with no 429, however many workers share it;
- unthrottled (a limit far above what the workers can ask): stations/s grows with
  the workers until this machine's CPU, not the API, is what they wait for: the
  API sees as many requests at once as there are workers (`peak_in_flight`).
"""
from __future__ import annotations

import math
import os

from ch03_signals import benchmark
from ch04_rate_limits import bench as ch04_bench, pipeline as ch04_pipeline
from ch04_rate_limits.loop import WINDOW_ENV
from workshop import settings as settings_mod, stations as answer_key

from . import published

COUNTS = (1, 2, 4)
LATENCY = 0.03             # seconds every request waits at the API
UNTHROTTLED = {"rate": 100_000.0, "burst": 10_000}


def day_of(limit: dict, seconds: float, max_batch: int) -> list[str]:
    """A day of full batches: the burst plus `seconds` worth of requests at the rate."""
    return answer_key.station_ids((limit["burst"] + math.ceil(limit["rate"] * seconds)) * max_batch)


def one_day(r, api, ids: list[str], limit: dict, timeout: float) -> dict:
    """A day of chapter 4's loop on the workers running now, at the API limit `limit`: figures, and the
    fetch phase's utilisation and span."""
    # The limit every kick publishes, read in this process: the workers get it through Redis.
    os.environ.update(API_RATE=f"{limit['rate']:g}", API_BURST=str(limit["burst"]))
    shape = ch04_bench.Shape(limit["rate"], limit["burst"], 0)
    # No faults: what is measured is throughput. Every request is "slow" by the round trip.
    api_limit = {**limit, "error_rate": 0.0, "malformed_rate": 0.0, "slow_rate": 1.0 if LATENCY else 0.0,
                 "slow_seconds": LATENCY}
    f = ch04_bench.loop_day(r, api, settings_mod.load(), ids, timeout, "global", api_limit)
    fetch = ch04_bench.paced(shape, f)
    return {**f, "fetch_utilisation": fetch["utilisation"], "fetch_span": fetch["span"],
            "peak_in_flight": api.stats()["peak_in_flight"]}


def run(r, api, limited: dict, seconds: float, max_batch: int, timeout: float, log_dir: str,
        counts: tuple[int, ...] = COUNTS, unthrottled_stations: int | None = None, watch=None) -> list[dict]:
    """For each worker count: a day under `limited` ({rate, burst}) and an unthrottled one, on one set of
    workers. One row per count: {"workers", "limited": figures, "unthrottled": figures}, and what
    `watch()` answers while that count's workers still run (e.g. Flower's summary), under "watched".
    The limits it publishes per day are given back after."""
    limited_ids = day_of(limited, seconds, max_batch)
    free_ids = answer_key.station_ids(unthrottled_stations or len(limited_ids))
    rows = []
    with published.terms(API_MAX_BATCH=str(max_batch)):
        for count in counts:
            os.environ[WINDOW_ENV] = str(count)       # a batch in flight per worker process (read at each kick)
            with ch04_bench.workers("ch04_rate_limits.app", log_dir, count):
                print(f"{count} worker(s): {len(limited_ids)} stations at {limited['rate']:g}/s ...", flush=True)
                under = one_day(r, api, limited_ids, limited, timeout)
                print(f"{count} worker(s): {len(free_ids)} stations unthrottled ...", flush=True)
                free = one_day(r, api, free_ids, UNTHROTTLED, timeout)
                watched = watch() if watch else None
            for f in (under, free):
                if not f["over"]:   # its tasks may still be queued: stop the day, nothing left for the next count
                    ch04_pipeline.LOOP.stop(r, settings_mod.load().day.isoformat(), "timed out in scale-out")
            rows.append({"workers": count, "limited": under, "unthrottled": free, "watched": watched})
    return rows


def speedups(rows: list[dict]) -> list[float]:
    """Unthrottled stations/s of each count against the first count's."""
    base = rows[0]["unthrottled"]["stations/s"]
    return [row["unthrottled"]["stations/s"] / base if base else 0.0 for row in rows]


def table(rows: list[dict], limited: dict) -> str:
    lines = [("workers", f"at {limited['rate']:g}/s: stations/s", "utilisation (fetch)", "429s", "done",
              "unthrottled: stations/s", "x vs 1", "at once", "429s", "done")]
    for row, speedup in zip(rows, speedups(rows)):
        under, free = row["limited"], row["unthrottled"]
        lines.append((str(row["workers"]), f"{under['stations/s']:.1f}", f"{under['fetch_utilisation']:.1%}",
                      str(under["429s"]), f"{under['done']} of {under['stations']}",
                      f"{free['stations/s']:.1f}", f"{speedup:.2f}", str(free["peak_in_flight"]),
                      str(free["429s"]),
                      f"{free['done']} of {free['stations']}"))
    return benchmark.aligned(lines)
