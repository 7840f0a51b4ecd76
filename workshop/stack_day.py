"""`python -m workshop stack-day`: a day of the last chapter's pipeline, run by the compose stack's workers.

Runs inside a container of the stack (`make day` execs it in the jupyter service), where REDIS_URL,
API_URL and CH02_DB point at the stack's services and volume; the workers, beat and Flower there do the
rest, so the day shows in Flower while it runs. CI's compose check (.ci/compose-stack.sh) uses the same.

    python -m workshop stack-day run [N]       start, then wait for the end and compare with the answer key
    python -m workshop stack-day start [N]     forget the day, discover N stations, kick the loop
    python -m workshop stack-day running [N]   exit 0 while the loop runs with stations still to fetch
    python -m workshop stack-day check [N]     wait for the loop to finish, compare every row with the answer key
    python -m workshop stack-day status        the loop's state (owner, stop switch, work left per segment)
    python -m workshop stack-day kick          start the loop again if none runs (a stuck day)

N defaults to 2000 stations; the day is DAY's (default 2026-01-15).
"""
from __future__ import annotations

import argparse
import json
import time

import requests

from . import settings as settings_mod
from . import target

DEFAULT_STATIONS = 2000
REPORT_EVERY = 5.0   # seconds between two progress lines while a day runs


def _pipeline():
    """The last chapter's pipeline from WORKSHOP_TARGET's tree (the stack's PYTHONPATH names it too)."""
    target.activate()
    from ch05_reporting import pipeline
    return pipeline


def _day() -> str:
    return str(settings_mod.load().day)


def _redis():
    from .celery_app import redis_client
    return redis_client()


def _api_url() -> str:
    return settings_mod.load().effective_api_url


def left(r, day: str) -> int:
    """Stations still to fetch: queued, or handed to a worker and not done."""
    from ch02_segmented import stages
    from ch04_rate_limits.keys import for_day
    return stages.count(r, for_day(day).pending) + r.zcard(for_day(day).in_flight)


def start(stations: int) -> int:
    pipeline, r, day = _pipeline(), _redis(), _day()
    pipeline.reset(r, day)
    pipeline.ch04_pipeline.reset_limits(r)
    requests.post(f"{_api_url()}/_reset", timeout=10).raise_for_status()
    pipeline.ch03_pipeline.discover(day, stations)
    pipeline.kick(r, day)
    print(f"stack day: {stations} stations of {day} discovered and kicked", flush=True)
    return 0


def running(stations: int) -> int:
    pipeline, r, day = _pipeline(), _redis(), _day()
    still = left(r, day)
    owner = pipeline.LOOP.running(r, day)
    print(f"{still} of {stations} stations still to fetch, loop owner {owner}", flush=True)
    return 0 if still and owner else 1


def check(stations: int, timeout: float = 180.0) -> int:
    pipeline, r, day = _pipeline(), _redis(), _day()
    started = time.monotonic()
    finished = False
    while time.monotonic() - started < timeout:
        if pipeline.LOOP.wait(r, day, min(REPORT_EVERY, timeout - (time.monotonic() - started))):
            finished = True
            break
        print(f"stack day: {left(r, day)} of {stations} stations still to fetch after "
              f"{time.monotonic() - started:.0f} s", flush=True)
    outcome = pipeline.outcome(r, day)
    stats = requests.get(f"{_api_url()}/_stats", timeout=10).json()
    twice = sum(n > 1 for n in stats["fetches"].values())
    span = (stats["last_request_at"] or 0) - (stats["first_request_at"] or 0)
    pace = (f"; {stats['accepted'] / span:.1f} accepted requests/s of the API's {stats['config']['rate']:g} "
            f"over the fetch phase ({span:.1f} s)") if span > 0 else ""
    print(f"stack day: finished={finished} after {time.monotonic() - started:.1f} s more; {outcome}; "
          f"API requests {stats['requests']}, 429s {stats['rate_limited']}, stations fetched twice {twice}{pace}",
          flush=True)
    if not finished:
        print("stack day: not finished in time; its state (`stack-day status`):\n"
              + json.dumps(pipeline.LOOP.status(r, day), indent=2)
              + "\nno owner and work left: the loop stopped; `stack-day kick` starts it again (see TROUBLESHOOTING.md)",
              flush=True)
    ok = finished and outcome == {"stations": stations, "done": stations, "missing": 0, "wrong": 0, "dead": 0}
    return 0 if ok else 1


def run(stations: int) -> int:
    return start(stations) or check(stations)


def status(stations: int) -> int:
    pipeline, r, day = _pipeline(), _redis(), _day()
    print(json.dumps(pipeline.LOOP.status(r, day), indent=2), flush=True)
    return 0


def kick(stations: int) -> int:
    pipeline, r, day = _pipeline(), _redis(), _day()
    owner = pipeline.kick(r, day)
    print(f"stack day: {'started a loop, owner ' + owner if owner else 'a loop was already running'}", flush=True)
    return 0


COMMANDS = {"run": run, "start": start, "running": running, "check": check, "status": status, "kick": kick}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop stack-day",
                                     description="a day on the compose stack's workers")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("stations", nargs="?", type=int, default=DEFAULT_STATIONS)
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args.stations)
