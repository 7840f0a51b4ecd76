# Exercise copy of solutions/ch03_signals/pipeline.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""This chapter's loop: chapter 2's fetch -> transform -> persist, one batch after the other.

    discover (once, by hand)  ->  kick  ->  fetch ... fetch  ->  transform ...  ->  persist ...  ->  done

`LOOP` is the one loop of this app; handlers.py connects it to its tasks'
signals in every worker (importing this module connects nothing). `run` is the
whole day from a notebook, the demo or the benchmark: discover, kick, wait.
"""
from __future__ import annotations

import redis

from ch02_segmented import discover as discover_segment, keys as segment_keys
from ch02_segmented import pipeline as segment_pipeline, persist as persist_segment
from ch02_segmented import transform as transform_segment
from workshop import settings as settings_mod

from . import tasks
from .loop import Loop, Segment


def fetch_batch_size() -> int:
    """BATCH_SIZE stations per API request, never more than the API's maximum batch."""
    s = settings_mod.load()
    return min(s.batch_size, s.api_max_batch)


def segments(fetch_task, transform_task, persist_task) -> tuple[Segment, ...]:
    """The three segments in order, for any three tasks with chapter 2's (batch, day, ...) signature."""
    return (
        Segment("fetch", fetch_task, source="pending", batch_size=fetch_batch_size),
        Segment("transform", transform_task, source="fetched", batch_size=lambda: transform_segment.BATCH),
        Segment("persist", persist_task, source="transformed", batch_size=lambda: persist_segment.BATCH,
                options=("db",)),
    )


LOOP = Loop("ch03", segments(tasks.fetch_batch, tasks.transform_batch, tasks.persist_batch))


def kick(r: redis.Redis, day=None, db: str | None = None) -> str | None:
    """Start the day's loop unless one runs (and lift its stop switch); its owner token, or None."""
    return LOOP.kick(r, day, db=db)


def stop(r: redis.Redis, day=None) -> None:
    """Stop the day's loop after the batch in flight; `kick` resumes it where it stopped."""
    LOOP.stop(r, day)


def discover(day=None, limit: int | None = None) -> int:
    """Chapter 2's discover, run here (one small task body, a couple of API calls): stations queued."""
    return discover_segment.run_segment(segment_keys.day_of(day), limit)["stations"]


def run(r: redis.Redis, day=None, limit: int | None = None, db: str | None = None,
        timeout: float = 120.0, show: bool = True) -> bool:
    """The whole day: discover, kick, and wait until the loop ran out of work (True) or `timeout`."""
    day = segment_keys.day_of(day)
    discover(day, limit)
    kick(r, day, db=db)
    return LOOP.wait(r, day, timeout, show=show)


def reset(r: redis.Redis, day=None) -> None:
    """Forget the day: chapter 2's sets and data, this loop's keys and counters."""
    k = segment_keys.for_day(day)
    stale = [*r.scan_iter(match=k.pattern, count=1000),
             *r.scan_iter(match=f"progress:{segment_keys.PREFIX}:{k.day}:*")]
    if stale:
        r.delete(*stale)
    LOOP.forget(r, k.day)


def outcome(r: redis.Redis, day=None, db: str | None = None,
            settings: settings_mod.Settings | None = None) -> dict[str, int]:
    """Every discovered station's SQLite row against the answer key (chapter 2's check)."""
    return segment_pipeline.outcome(r, day, db, settings)
