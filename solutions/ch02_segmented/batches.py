"""Fan-out: one segment run becomes one small task per batch of station ids."""
from __future__ import annotations

import redis
from celery import Task, group

from workshop import progress


def split(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def fan_out(r: redis.Redis, progress_key: str, batch_task: Task, ids: list[str], size: int,
            *args, **kwargs) -> dict:
    """Start the counters and send `batch_task(batch, *args, **kwargs)` per batch.

    Only ids travel through the broker; each batch task reads and writes the data in
    Redis. Returns how many stations were queued and the batch tasks' ids.
    """
    ids = sorted(ids)   # the same input gives the same batches: reproducible runs and faults
    if not ids:
        # Nothing to queue: leave the counters alone, they may belong to batches an
        # earlier tick sent that are still running.
        return {"stations": 0, "batches": []}
    progress.start(r, progress_key, len(ids))
    sent = group(batch_task.s(batch, *args, **kwargs) for batch in split(ids, size)).apply_async()
    return {"stations": len(ids), "batches": [result.id for result in sent.results]}
