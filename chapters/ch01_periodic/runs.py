# Exercise copy of solutions/ch01_periodic/runs.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The run log: what each run of the periodic task did, so overlaps and gaps can be seen.

This is not part of the monolith's logic; it is the instrument we bolt on to
watch it. Every run appends one record (started, finished, slice, done, error)
to a Redis list and counts itself in `running` while it works.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import redis

from workshop import progress

from .keys import key


@dataclass
class Run:
    started: float = field(default_factory=time.time)
    finished: float | None = None
    start: int | None = None       # index of the slice's first station in the day's list
    size: int = 0                  # stations taken
    done: int = 0                  # stations summarised and stored
    error: str | None = None       # why the run ended early, if it did

    def took(self, start: int, ids: list[str]) -> tuple[int, list[str]]:
        self.start, self.size = start, len(ids)
        return start, ids


@contextmanager
def recorded(r: redis.Redis, day: str):
    """Count the run in `running` while it works; log it when it ends, however it ends. Never swallows."""
    run = Run()
    r.incr(key(day, "running"))
    try:
        yield run
    except BaseException as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:200]
        raise
    finally:
        run.finished = time.time()
        with r.pipeline() as p:
            p.rpush(key(day, "runs"), json.dumps(asdict(run)))
            p.decr(key(day, "running"))
            p.execute()


def log(r: redis.Redis, day: str) -> list[Run]:
    """Every finished run of the day, in the order they finished."""
    return [Run(**json.loads(raw)) for raw in r.lrange(key(day, "runs"), 0, -1)]


def finished(r: redis.Redis, day: str) -> bool:
    """The schedule went round: the cursor is past the day's list and no run is working.

    Later beats still send runs, but they find nothing left to take.
    """
    with r.pipeline() as p:   # MULTI: one consistent look, not three moments a late run could fall between
        p.llen(key(day, "stations"))
        p.get(key(day, "cursor"))
        p.get(key(day, "running"))
        total, cursor, running = p.execute()
    # <= 0: a run that was at work when the day was reset counts itself out below zero.
    return total > 0 and int(cursor or 0) >= total and int(running or 0) <= 0


def most_at_once(runs: list[Run]) -> int:
    """The most runs that were working at the same moment (1: they never overlapped)."""
    events = sorted([(run.started, 1) for run in runs] + [(run.finished, -1) for run in runs],
                    key=lambda event: (event[0], event[1]))
    now = most = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def exercise_missing(runs: list[Run]) -> str | None:
    """The NotImplementedError a run ended with, if any: an exercise is still to do."""
    return next((run.error for run in runs if run.error and run.error.startswith("NotImplementedError")), None)


def wait(r: redis.Redis, day: str, timeout: float, show: bool = False, desc: str = "stations stored") -> bool:
    """Wait until the schedule went round (True) or `timeout` seconds passed (False).

    show=True draws the progress bar meanwhile, labelled `desc`. A run that ended in
    NotImplementedError raises it here: an exercise is still to do.
    """
    def over() -> bool:
        missing = exercise_missing(log(r, day))
        if missing:
            raise NotImplementedError(f"a run of the pipeline stopped at an exercise: {missing}")
        return finished(r, day)

    deadline = time.monotonic() + timeout
    if show:
        # The first run lists the day's stations: until then the bar has no total to draw.
        while not r.llen(key(day, "stations")) and not over() and time.monotonic() < deadline:
            time.sleep(0.1)
        progress.follow(r, key(day, "progress"), desc=desc,
                        timeout=max(0.0, deadline - time.monotonic()), until=over)
    while not over():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
