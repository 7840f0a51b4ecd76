"""The kit's self-check: a tiny real pipeline run by `make demo` until a chapter's demo lands.

One task fetches the readings of a batch of stations from the Stations API and
stores them in Redis; the run then checks every stored reading against the data
set. It is not lesson code (no retries, no rate limiting): it proves that Redis,
the API, the worker and the progress bar all work on this machine.
"""
from __future__ import annotations

import json

import requests

from . import progress, settings as settings_mod, stations
from .celery_app import make_app

app = make_app("workshop.selfcheck")

PREFIX = "selfcheck"
PROGRESS = f"{PREFIX}:progress"
FAILED = f"{PREFIX}:failed"  # hash: station -> why


def readings_key(station: str) -> str:
    return f"{PREFIX}:readings:{station}"


@app.task(name="workshop.selfcheck.fetch_batch")
def fetch_batch(batch: list[str], day: str) -> int:
    s = settings_mod.load()
    r = app.backend.client  # the result backend's Redis connection: the same Redis
    try:
        response = requests.get(f"{s.effective_api_url}/readings",
                                params={"stations": ",".join(batch), "date": day},
                                headers={"X-API-Key": s.api_key}, timeout=s.request_timeout)
        response.raise_for_status()
        readings = response.json()["readings"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        # Visible, not lost: every station of the batch is recorded with the reason.
        r.hset(FAILED, mapping={station: f"{type(exc).__name__}: {exc}"[:200] for station in batch})
        progress.advance(r, PROGRESS, failed=len(batch))
        return 0
    with r.pipeline() as p:
        for station in batch:
            p.set(readings_key(station), json.dumps(readings[station]))
        p.execute()
    progress.advance(r, PROGRESS, done=len(batch))
    return len(batch)


def run(r, settings: settings_mod.Settings, timeout: float = 120.0) -> dict:
    """Fetch `demo_stations` stations in batches, follow the progress, then verify what was stored."""
    ids = stations.station_ids(min(settings.demo_stations, settings.api_stations))
    day = settings.day.isoformat()
    r.delete(FAILED, *[readings_key(s) for s in ids])
    progress.start(r, PROGRESS, len(ids))
    for i in range(0, len(ids), settings.batch_size):
        fetch_batch.delay(ids[i:i + settings.batch_size], day)
    progress.follow(r, PROGRESS, desc="self-check", timeout=timeout)
    failed = r.hgetall(FAILED)
    outcome = {"done": 0, "failed": 0, "missing": 0, "wrong": 0}
    for station in ids:
        outcome[_verdict(r, station, failed, settings, day)] += 1
    return {"stations": len(ids), **outcome}


def _verdict(r, station: str, failed: dict, settings: settings_mod.Settings, day: str) -> str:
    if station in failed:
        return "failed"
    raw = r.get(readings_key(station))
    if raw is None:
        return "missing"
    expected = stations.readings(settings.seed, station, day, settings.api_glitch_rate)
    return "done" if json.loads(raw) == expected else "wrong"
