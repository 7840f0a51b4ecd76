# Exercise copy of solutions/ch02_segmented/fetch.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Segment 2, fetch: the readings of every pending station, one API request per batch.

Input: `pending`. Output: `raw:<station>` (the 24 readings, with a TTL) and
`fetched`. A batch moves its stations from pending to fetched only once their
readings are stored; a batch that fails (an API error, a 429, a timeout, a
broken body) leaves them in pending, with the reason in `fetch:errors`, so the
next run fetches them. No retries here: chapter 4 adds them.
"""
from __future__ import annotations

import json

import requests

from ch01_periodic.stations_api import fetch_readings
from workshop import progress, settings as settings_mod

from . import keys, stages
from .app import app
from .batches import fan_out
from workshop.celery_app import redis_client

# What a batch can run into that is the API's fault, not ours: these are recorded, not raised.
# A body that is not JSON raises requests' JSONDecodeError, a RequestException; a body without
# one of the stations asked for, a KeyError. Anything else is a bug of ours, and raises.
API_ERRORS = (requests.RequestException, KeyError)


@app.task
def run_segment(day: str | None = None, batch_size: int | None = None) -> dict:
    """Entry task: one fetch_batch per batch of pending stations; {stations, batches}."""
    r, k, s = redis_client(), keys.for_day(day), settings_mod.load()
    size = min(batch_size or s.batch_size, s.api_max_batch)
    return fan_out(r, k.progress("fetch"), fetch_batch, stages.members(r, k.pending), size, k.day)


def record_failure(r, k: keys.Keys, batch: list[str], error: Exception) -> None:
    """Say why, per station, and count them as failed; the stations themselves stay in pending."""
    response = getattr(error, "response", None)
    why = (f"HTTP {response.status_code} {response.reason}" if response is not None
           else f"{type(error).__name__}: {error}"[:200])
    r.hset(k.fetch_errors, mapping={station: why for station in batch})
    progress.advance(r, k.progress("fetch"), failed=len(batch))


@app.task
def fetch_batch(batch: list[str], day: str) -> dict:
    """Fetch one batch (ids only came through the broker) and move it pending -> fetched."""
    r, k = redis_client(), keys.Keys(day)
    # exercise 2.1: fetch the batch in one request; an API error (API_ERRORS) is recorded (record_failure) and moves nothing; otherwise every station's raw readings (JSON, expiring after keys.RAW_TTL) and its move pending -> fetched (stages.move), with its old fetch error cleared, land in ONE transaction: all or nothing; return the counts
    raise NotImplementedError("exercise 2.1: fetch the batch in one request; an API error (API_ERRORS) is recorded (record_failure) and moves nothing; otherwise every station's raw readings (JSON, expiring after keys.RAW_TTL) and its move pending -> fetched (stages.move), with its old fetch error cleared, land in ONE transaction: all or nothing; return the counts")
    progress.advance(r, k.progress("fetch"), done=len(batch))
    return {"day": day, "done": len(batch), "failed": 0}
