"""CI's check of the compose stack (not lesson code): a day of the last chapter's pipeline, run by the
stack's own workers. Runs inside a container of the stack (`docker-compose exec -T jupyter python ...`),
where REDIS_URL, API_URL and CH02_DB point at the stack's services and volume.

    python .ci/compose_day.py start N     forget the day, discover N stations, kick the loop
    python .ci/compose_day.py running N   exit 0 while the loop runs with stations still to fetch (prints how many)
    python .ci/compose_day.py check N     wait for the loop to finish, compare every row with the answer key

Exit 0 when every station's row equals the answer key and none is missing; the figures are printed.
"""
from __future__ import annotations

import sys
import time

import requests

from ch02_segmented import stages
from ch04_rate_limits.keys import for_day
from ch05_reporting import pipeline
from workshop import settings as settings_mod
from workshop.celery_app import redis_client

DAY = "2026-02-02"


def start(stations: int) -> int:
    r = redis_client()
    pipeline.reset(r, DAY)
    pipeline.ch04_pipeline.reset_limits(r)
    requests.post(f"{settings_mod.load().effective_api_url}/_reset", timeout=10).raise_for_status()
    pipeline.ch03_pipeline.discover(DAY, stations)
    pipeline.kick(r, DAY)
    print(f"compose day: {stations} stations of {DAY} discovered and kicked", flush=True)
    return 0


def running(stations: int) -> int:
    r = redis_client()
    left = stages.count(r, for_day(DAY).pending) + r.zcard(for_day(DAY).in_flight)
    print(f"{left} of {stations} stations still to fetch, loop owner {pipeline.LOOP.running(r, DAY)}", flush=True)
    return 0 if left and pipeline.LOOP.running(r, DAY) else 1


def check(stations: int, timeout: float = 180.0) -> int:
    r = redis_client()
    started = time.monotonic()
    finished = pipeline.LOOP.wait(r, DAY, timeout)
    outcome = pipeline.outcome(r, DAY)
    stats = requests.get(f"{settings_mod.load().effective_api_url}/_stats", timeout=10).json()
    twice = sum(n > 1 for n in stats["fetches"].values())
    span = (stats["last_request_at"] or 0) - (stats["first_request_at"] or 0)
    pace = (f"; {stats['accepted'] / span:.1f} accepted requests/s of the API's {stats['config']['rate']:g} "
            f"over the fetch phase ({span:.1f} s, the restart included)") if span > 0 else ""
    print(f"compose day: finished={finished} after {time.monotonic() - started:.1f} s more; {outcome}; "
          f"API requests {stats['requests']}, 429s {stats['rate_limited']}, stations fetched twice {twice}{pace}",
          flush=True)
    ok = finished and outcome == {"stations": stations, "done": stations, "missing": 0, "wrong": 0, "dead": 0}
    return 0 if ok else 1


if __name__ == "__main__":
    command, count = sys.argv[1], int(sys.argv[2])
    sys.exit({"start": start, "running": running, "check": check}[command](count))
