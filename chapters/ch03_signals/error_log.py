# Exercise copy of solutions/ch03_signals/error_log.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Secondary work on signals: an error log of every failed batch task.

`task_failure` runs in the worker's pool process when a task raises; this
handler appends one entry to a Redis stream: task, task_id, day, the station
batch, the exception, and the time. Nothing in the pipeline writes to it, and
nothing here connects at import: `connect` is called by handlers.py.
"""
from __future__ import annotations

import json
import time
from functools import partial

import redis
from celery import Task
from celery.signals import task_failure

from workshop.celery_app import redis_client
from workshop.lua import append_once

ERRORS = "ch03:errors"
MAXLEN = 100_000


def connect(*batch_tasks: Task, stream: str = ERRORS) -> None:
    for task in batch_tasks:   # lazy task proxies are fine: Celery connects the task once it is made
        task_failure.connect(partial(_on_failure, stream=stream), sender=task, weak=False,
                             dispatch_uid=f"error_log:{stream}")


def _on_failure(sender: Task, task_id: str, exception: BaseException, args=(), stream: str = ERRORS, **_) -> None:
    """task_failure's receiver: Celery passes the task object as `sender` and the failure as keywords."""
    # exercise 3.2: append ONE entry to `stream` per failed batch task, with the fields `entries` reads back (task: the task's short name, task_id, day, batch as JSON, exception as "Type: message" within 500 characters, at: epoch seconds); keep the stream near MAXLEN entries, and one entry even if redis-py sends the write twice (workshop.lua.append_once)
    raise NotImplementedError('exercise 3.2: append ONE entry to `stream` per failed batch task, with the fields `entries` reads back (task: the task\'s short name, task_id, day, batch as JSON, exception as "Type: message" within 500 characters, at: epoch seconds); keep the stream near MAXLEN entries, and one entry even if redis-py sends the write twice (workshop.lua.append_once)')


def entries(r: redis.Redis, day: str | None = None, stream: str = ERRORS) -> list[dict]:
    """The error log, oldest first (of `day`, if given); `batch` as a list, `at` as epoch seconds."""
    rows = []
    for entry_id, fields in r.xrange(stream):
        if day is None or fields.get("day") == day:
            rows.append({**fields, "id": entry_id, "batch": json.loads(fields["batch"]), "at": float(fields["at"])})
    return rows

