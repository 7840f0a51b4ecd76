"""The monolith on a timer: one task does the whole pipeline, one slice of stations per beat.

Every BEAT_INTERVAL seconds celery beat sends `run_slice`. A run takes the next
SLICE_SIZE stations from a cursor in Redis and, station by station, fetches the
readings, summarises them and stores the summary. When it ends it moves the
cursor past its slice, and the next beat takes the next slice. When the cursor
reaches the end of the day's list, runs find nothing to do: the day is over.

It is what most teams write first, and on a good day it works. Each of its
choices has a failure mode, which this chapter measures:

- the cursor moves when a run *ends*: a run that outlasts the interval lets the
  next one read the same cursor, and both fetch the same stations;
- a run that is shorter than the interval leaves the API idle until the next beat;
- an API error ends the run and the cursor moves on anyway: the rest of the
  slice is never done;
- discover, fetch, transform and persist are one function: none of them can be
  run, retried or tested without the others and a live API.
"""
from __future__ import annotations

import json

import redis

from workshop import progress, settings as settings_mod
from workshop.celery_app import redis_client

from . import runs
from .app import app
from .keys import all_keys, key
from .stations_api import fetch_readings, list_stations
from .summary import summarise


def plan_day(r: redis.Redis, day: str, ids: list[str]) -> None:
    """Make `ids` the day's station list (replacing any) and start counting progress against it."""
    with r.pipeline() as p:   # MULTI: a run reading the list sees all of it or none
        p.delete(key(day, "stations"))
        p.rpush(key(day, "stations"), *ids)
        p.execute()
    progress.start(r, key(day, "progress"), len(ids))


def day_stations(r: redis.Redis, day: str, settings: settings_mod.Settings) -> int:
    """Discover: the first run of the day lists every station from the API; later runs reuse the list."""
    total = r.llen(key(day, "stations"))
    if not total:
        ids = list_stations(settings)
        plan_day(r, day, ids)
        total = len(ids)
    return total


def take_slice(r: redis.Redis, day: str, size: int) -> tuple[int, list[str]]:
    """(cursor, the next `size` station ids from it); no ids once the cursor is past the end of the day.

    Taking only reads: the cursor moves when the run ends (see run_slice), so
    every run that starts before then takes the very same slice.
    """
    # >>> exercise 1.1: the cursor (0 before the first run) and the `size` station ids of the day's list that start at it (fewer at the end, none past it); reads only: the cursor does not move here
    start = int(r.get(key(day, "cursor")) or 0)
    return start, r.lrange(key(day, "stations"), start, start + size - 1)
    # <<<


@app.task(name="ch01_periodic.run_slice", ignore_result=True)
def run_slice() -> dict:
    """One beat's worth of the day: discover, then fetch, transform and persist a slice, station by station.

    No retries, no rate limiting, nothing caught: an API error ends the run.
    """
    settings = settings_mod.load()   # at call time, so a test's or notebook's settings reach the worker
    r = redis_client()
    day = settings.day.isoformat()
    with runs.recorded(r, day) as run:
        day_stations(r, day, settings)                                          # discover
        start, ids = run.took(*take_slice(r, day, settings.slice_size))
        # >>> exercise 1.2: fetch, summarise and store each station of the slice, one API request per station; `run.done` counts them and the day's progress counts each summary stored for the first time; the cursor ends past the slice even when a station fails (the error still ends the run)
        try:
            for station in ids:
                readings = fetch_readings([station], day, settings)[station]   # fetch: one call per station
                summary = summarise(station, day, readings)                     # transform
                if r.hset(key(day, "summaries"), station, json.dumps(summary)):  # persist (1: new field)
                    progress.advance(r, key(day, "progress"), done=1)
                run.done += 1
        finally:
            # Move on whatever happened: a slice that failed on every run would block the whole day.
            r.set(key(day, "cursor"), start + len(ids))
        # <<<
    return {"start": start, "taken": len(ids), "done": run.done}


def summaries(r: redis.Redis, day: str) -> dict[str, dict]:
    """Every summary stored for the day: station -> summary."""
    return {station: json.loads(raw) for station, raw in r.hgetall(key(day, "summaries")).items()}


def reset(r: redis.Redis, day: str) -> None:
    """Forget the day: list, cursor, summaries, progress and run log (to run it again from scratch)."""
    r.delete(*all_keys(day))
