# Exercise copy of solutions/ch03_signals/history.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Secondary work on signals: a history of every batch task, with its timings.

`task_prerun` notes when a task starts (in the process that runs it);
`task_postrun` appends one entry to a Redis stream when it ends, whatever the
outcome. The tasks and the loop do not know this exists: drop its line from
handlers.py and they run the same.

An entry: task, task_id, parent_id (the task whose handler sent it), owner (the
loop's token, from the message headers), day, stations, first, last, state,
started, finished, worker.
"""
from __future__ import annotations

import os
import time
from functools import partial
from typing import Callable

import redis
from celery import Task
from celery.signals import task_postrun, task_prerun

from ch02_segmented import keys as segment_keys, stages
from workshop.celery_app import redis_client
from workshop.lua import append_once

from . import loop

HISTORY = "ch03:history"
MAXLEN = 100_000   # a stream is trimmed, not grown forever (approximately: cheap)

_started: dict[str, float] = {}   # task id -> start time; prerun and postrun run in the same process


def connect(*batch_tasks: Task, stream: str = HISTORY) -> None:
    for task in batch_tasks:   # lazy task proxies are fine: Celery connects the task once it is made
        task_prerun.connect(_on_prerun, sender=task, weak=False, dispatch_uid="history:start")
        task_postrun.connect(partial(_on_postrun, stream=stream), sender=task, weak=False,
                             dispatch_uid=f"history:{stream}")


def _on_prerun(task_id: str, **_) -> None:
    _started[task_id] = time.time()


def _on_postrun(sender: Task, task_id: str, args=(), state: str | None = None, stream: str = HISTORY, **_) -> None:
    finished = time.time()
    request = sender.request
    headers = request.headers or {}
    batch = args[0] if args and isinstance(args[0], list) else []
    append_once(redis_client(), stream, {
        "task": sender.name.rsplit(".", 1)[-1],
        "task_id": task_id,
        "parent_id": request.parent_id or "",
        "owner": headers.get(loop.OWNER, ""),
        "day": headers.get(loop.DAY) or (args[1] if len(args) > 1 else ""),
        "stations": len(batch),
        "first": batch[0] if batch else "",
        "last": batch[-1] if batch else "",
        "state": state or "",
        "started": repr(_started.pop(task_id, finished)),
        "finished": repr(finished),
        "worker": f"{request.hostname}/{os.getpid()}",
    }, MAXLEN)   # once, even if redis-py sends it twice: two rows would be a batch that ran twice


def entries(r: redis.Redis, day: str | None = None, stream: str = HISTORY) -> list[dict]:
    """The history, oldest first (of `day`, if given), with numbers as numbers."""
    rows = []
    for entry_id, fields in r.xrange(stream):
        if day is None or fields.get("day") == day:
            rows.append({**fields, "id": entry_id, "stations": int(fields["stations"]),
                         "started": float(fields["started"]), "finished": float(fields["finished"])})
    return rows


def wait(r: redis.Redis, day: str, ready: Callable[[list[dict]], bool], timeout: float = 10.0,
         stream: str = HISTORY) -> list[dict]:
    """The day's entries once `ready(entries)` is true (or `timeout` passed), oldest start first.

    An entry is written by task_postrun, which comes after task_success: the entry of the batch
    whose handler finished a loop can land a moment after the loop says it finished.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = sorted(entries(r, day, stream), key=lambda e: e["started"])
        if ready(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def iterations(r: redis.Redis, day: str, timeout: float = 10.0, stream: str = HISTORY) -> list[dict]:
    """The day's entries, oldest start first, once they hold every batch that persisted a station."""
    persisted = stages.count(r, segment_keys.Keys(day).persisted)
    return wait(r, day, lambda rows: sum(e["stations"] for e in rows if e["task"] == "persist_batch"
                                         and e["state"] == "SUCCESS") >= persisted, timeout, stream)

