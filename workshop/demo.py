"""`make demo`: the most advanced finished chapter's pipeline, end to end, on this machine.

A chapter takes part by shipping `solutions/chNN_*/demo.py` with a Celery `app`
and `run(r, settings) -> dict` (counts such as done, failed, missing). It may add
`ENVIRONMENT` (settings its story needs, e.g. the API's glitches; yours win) and
`story(stats) -> str`, its own summary of the run (given the fake API's /_stats), which
then replaces the kit's: one summary, from one source, never two that disagree. Until
a chapter ships one, the kit's self-check runs. The demo brings what every run needs:
a Redis, the fake Stations API, an embedded worker; and ends on a one-sentence verdict.
"""
from __future__ import annotations

import argparse
import importlib
import os
import time

from . import settings as settings_mod, target
from .api import ApiConfig, ApiServer
from .celery_app import use_redis
from .redis_provider import provide_redis
from .workers import EmbeddedWorker


def pipeline_module(name: str | None = None):
    """Module `name`, else the demo of the last chapter in solutions/ that has one, else the self-check."""
    target.activate("solutions")
    if name:
        return importlib.import_module(name)
    for chapter in reversed(target.chapters("solutions")):
        if (target.tree("solutions") / chapter / "demo.py").exists():
            return importlib.import_module(f"{chapter}.demo")
    return importlib.import_module("workshop.selfcheck")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop demo")
    parser.add_argument("--pipeline", metavar="MODULE",
                        help="the demo module to run (default: the last chapter's, else workshop.selfcheck)")
    args = parser.parse_args(argv)
    module = pipeline_module(args.pipeline)
    for name, value in getattr(module, "ENVIRONMENT", {}).items():
        os.environ.setdefault(name, value)   # before the API and the answer key read the settings
    settings = settings_mod.load()
    with provide_redis(settings) as redis_, ApiServer(ApiConfig.from_settings(settings), port=0) as api:
        use_redis(redis_.url)
        os.environ["API_URL"] = api.url
        settings = settings_mod.load()
        r = redis_.client()
        print(f"Stations API: {api.url} (rate {settings.api_rate:g}/s, max batch {settings.api_max_batch})")
        print(f"Pipeline: {module.__name__} on {settings.demo_stations} stations, day {settings.day}")
        started = time.monotonic()
        with EmbeddedWorker(module.app, pool="threads", concurrency=4):
            outcome = module.run(r, settings)
        duration = time.monotonic() - started
        stats = api.stats()
    if hasattr(module, "story"):   # the chapter's own summary replaces the kit's: one story
        print(module.story(stats))
        figures = module.figures() if hasattr(module, "figures") else {}
        stats = {**stats, "requests": figures.get("api_requests", stats["requests"]),
                 "rate_limited": figures.get("rate_limited", stats["rate_limited"])}
    else:
        print(summary(outcome, stats, duration))
    ok, sentence = verdict(outcome, stats, module.__name__)
    print(f"\n{sentence}")
    return 0 if ok else 1


def verdict(outcome: dict, stats: dict, pipeline: str) -> tuple[bool, str]:
    """The run in one sentence: OK when every station's row equals the answer key, else what is not."""
    done, stations = outcome.get("done", 0), outcome.get("stations", 0)
    dead = outcome.get("dead")
    problems = [f"{label}: {outcome[name]}" for name, label in (
        ("wrong", "rows that differ from the answer key"), ("missing", "stations missing for no reason"),
        ("failed", "stations whose fetch failed")) if outcome.get(name)]
    limit = (f"{stats['requests']} API calls, none over the limit" if not stats["rate_limited"] else
             f"{stats['requests']} API calls, {stats['rate_limited']} refused with a 429 (over the limit)")
    letters = "" if dead is None else (f"; {dead} dead letters (stations given up on, each with its reason)")
    head = "OK" if done == stations and not problems else "NOT OK"
    detail = f"{done}/{stations} stations equal the answer key" + (f", {', '.join(problems)}" if problems else "")
    return head == "OK", f"{head} ({pipeline}): {detail}; {limit}{letters}."


def summary(outcome: dict, stats: dict, duration: float) -> str:
    done = outcome.get("done", 0)
    lines = [
        "",
        f"stations done    {done} of {outcome.get('stations')}",
        *(f"stations {name:<8}{value}" for name, value in outcome.items() if name not in ("done", "stations")),
        f"API calls        {stats['requests']} ({stats['accepted']} accepted)",
        f"429s             {stats['rate_limited']}",
        f"duration         {duration:.1f} s ({done / duration:.0f} stations/s)" if duration else "",
    ]
    return "\n".join(lines)
