# Exercise copy of solutions/ch06_capstone/naive.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The naive pipeline chapter 6 restarts Redis under: the kit's self-check task (fetch a batch, store it,
nothing more: no lease, no loop, acknowledged when a pool process takes it), on an app of its own whose
visibility timeout is a setting, so that the chapter can show what an hour of it means.

    CH06_VISIBILITY_TIMEOUT=10 celery -A ch06_capstone.naive worker
"""
from __future__ import annotations

import os

from workshop import selfcheck
from workshop.celery_app import make_app

VISIBILITY_ENV = "CH06_VISIBILITY_TIMEOUT"
TASK = "ch06.naive.fetch_batch"
QUEUE = "ch06-naive"   # a queue of its own: no other chapter's message reaches its workers, nor theirs it


def visibility_timeout() -> float:
    raw = os.environ.get(VISIBILITY_ENV, "3600")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{VISIBILITY_ENV} must be a number of seconds above 0, got {raw!r}; pass e.g. 10.")
    return seconds


app = make_app("ch06_capstone.naive", task_default_queue=QUEUE,
               broker_transport_options={"visibility_timeout": visibility_timeout()})


@app.task(name=TASK)
def fetch_batch(batch: list[str], day: str) -> int:
    """The self-check's task body (it stores through the Redis in REDIS_URL, as this app does): one task
    per batch, as a first pipeline is written."""
    return selfcheck.fetch_batch.run(batch, day)
