"""Running segments by hand, from a notebook, a test or the demo, and checking the outcome.

`run_segment` sends a segment's entry task and waits until every station it
queued is accounted for (done or failed), following its progress counters.
"""
from __future__ import annotations

import redis
import requests

from workshop import progress, settings as settings_mod, stations as answer_key

from . import database, discover, fetch, keys, persist, stages, transform

ENTRY_TASKS = {"discover": discover.run_segment, "fetch": fetch.run_segment,
               "transform": transform.run_segment, "persist": persist.run_segment}


def run_segment(r: redis.Redis, segment: str, day: str | None = None, timeout: float = 120.0,
                **options) -> dict[str, int]:
    """Run one segment by hand until each of its batches has ended; its counters {total, done, failed}."""
    k = keys.for_day(day)
    entry = ENTRY_TASKS[segment]
    # Once the entry task answers, its counters are reset and its batches sent.
    sent = entry.delay(k.day, **options).get(timeout=timeout)
    if not sent["stations"]:
        # Nothing queued, counters untouched (an earlier tick's batches may own them): this run's are zero.
        return {"total": 0, "done": 0, "failed": 0}
    batches = [entry.app.AsyncResult(task_id) for task_id in sent["batches"]]
    # Stop when the counters are complete, or when every batch task has ended (one that
    # raised never counts its stations): never wait out the timeout for a dead batch.
    progress.follow(r, k.progress(segment), desc=segment, timeout=timeout,
                    until=lambda: all(batch.ready() for batch in batches))
    return progress.counters(r, k.progress(segment))   # read after the last batch ended


def run_all(r: redis.Redis, day: str | None = None, limit: int | None = None, db: str | None = None,
            fetch_rounds: int = 3, timeout: float = 120.0) -> dict[str, dict[str, int]]:
    """Each segment once, in order; fetch again (up to `fetch_rounds`) while stations are pending."""
    k = keys.for_day(day)
    counts = {"discover": run_segment(r, "discover", k.day, timeout, limit=limit)}
    for _ in range(fetch_rounds):
        counts["fetch"] = run_segment(r, "fetch", k.day, timeout)
        if not stages.count(r, k.pending):
            break
    counts["transform"] = run_segment(r, "transform", k.day, timeout)
    counts["persist"] = run_segment(r, "persist", k.day, timeout, db=db)
    return counts


def answer_key_config(settings: settings_mod.Settings | None = None) -> tuple[int, float, tuple[str, ...]]:
    """(seed, glitch_rate, glitch_kinds) the API serves: from its GET /_stats config, else the settings.

    The fake API (a `lab.setup(glitch_rate=...)`, a test's profile) may differ from the
    settings; a real API without /_stats is taken to serve what the settings say.
    """
    s = settings or settings_mod.load()
    try:
        response = requests.get(f"{s.effective_api_url}/_stats", timeout=5)
        response.raise_for_status()
        config = response.json()["config"]
        return int(config["seed"]), float(config["glitch_rate"]), tuple(config["glitch_kinds"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return s.seed, s.api_glitch_rate, s.api_glitch_kinds


def persisted_rows(r: redis.Redis, day: str | None = None, db: str | None = None) -> list[dict]:
    """The day's SQLite rows; none when no database exists yet and nothing was persisted (every station
    failed, or none got that far). A missing file while stations were persisted is a wrong path: it raises."""
    k = keys.for_day(day)
    if not stages.count(r, k.persisted) and not database.path(db).exists():
        return []
    return database.rows(db, k.day)


def outcome(r: redis.Redis, day: str | None = None, db: str | None = None,
            settings: settings_mod.Settings | None = None, *, seed: int | None = None,
            glitch_rate: float | None = None) -> dict[str, int]:
    """Every discovered station's SQLite row checked against the answer key.

    done: its row equals the expected summary; wrong: its row differs; failed: no
    row, and its last fetch failed; missing: no row, for no recorded reason.
    The answer key uses `seed` and `glitch_rate` if given, else the API's own config
    (`answer_key_config`), so it matches the readings the API served.
    """
    k = keys.for_day(day)
    api_seed, api_glitch_rate, kinds = answer_key_config(settings)
    seed = api_seed if seed is None else seed
    glitch_rate = api_glitch_rate if glitch_rate is None else glitch_rate
    ids = stages.members(r, k.stations)
    stored = {row["station"]: row for row in persisted_rows(r, k.day, db)}
    fetch_failed = set(r.hkeys(k.fetch_errors))
    counts = {"stations": len(ids), "done": 0, "failed": 0, "missing": 0, "wrong": 0}
    for station in ids:
        row = stored.get(station)
        if row is None:
            counts["failed" if station in fetch_failed else "missing"] += 1
        else:
            expected = answer_key.expected_summary(station, k.day, seed, glitch_rate, kinds)
            counts["done" if answer_key.same_summary(row, expected) else "wrong"] += 1
    return counts
