"""What a loop does when a batch fails: pause, count, halve, set aside.

A failure its task expects (in its `throws`, e.g. BatchFailed: the API's bad
moment) left the batch's stations where they were: the loop tries the same batch
again after a pause (`pause_after`). Any other failure (a bug, a reading no
transform was written for) would fail the same batch for ever, since the next
step is always the first ids of the same stage. So it is a *poison* hunt:

- each such failure counts one failure per station of the batch
  (`count_failure`, in `<loop>:{day}:failures`); a success clears them;
- the next batch of that segment is halved for each failure its first station
  has seen (`halved`, from `Loop.next_step`): the half that succeeds moves on,
  the one that fails is halved again, about log2(batch) failures in all;
- a batch of one station that fails again is set aside with the reason
  (`set_aside`, in `<loop>:{day}:poison`), and the rest of the day goes on.

A batch killed by its hard time limit fails from the worker's main process,
without its request and so without the loop's headers (`recover_killed`): its
chain is found by its task id, the failure counted, the chain continued.

`FailurePolicy` is a mixin of `Loop` (loop.py), which calls it from its two
handlers and `next_step`; it uses the loop's `keys`, `segment_of`,
`continue_chain` and `failure_pause`. Chapter 4 overrides `counts_failures`
(fetch counts its attempts itself), `set_aside` (to the dead letters) and
`after_time_limit` (the batch's lease back at once).
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import redis
from celery import Task
from celery.exceptions import TimeLimitExceeded

from workshop.celery_app import redis_client

from . import keys, lock
from .messages import Turn, batch_of

if TYPE_CHECKING:
    from .loop import Segment

FAILURE_PAUSE = 0.25      # seconds before the batch after a failed one (chapter 4: backoff, Retry-After)
POISON_AFTER = 2          # failures of a batch of one station before it is set aside


class FailurePolicy:
    """The loop's answer to a failed batch: a pause, and poison found by halving and set aside."""

    def pause_after(self, exception: BaseException | None) -> float:
        """Seconds to wait before the next batch after a failed one."""
        return self.failure_pause

    def counts_failures(self, segment: Segment) -> bool:
        """Whether a failed batch of `segment` counts towards setting its stations aside (all, here)."""
        return True

    def count_failure(self, r: redis.Redis, day: str, segment: Segment | None, batch: list[str],
                      exception: BaseException | None) -> None:
        """A batch failed unexpectedly: one failure per station; a lone station failing again is set aside.

        An expected failure (in the task's `throws`) counts nothing: it is retried as it is.
        A count sent twice by a retried command only halves a batch once more: harmless.
        """
        if segment is None or not batch or not self.counts_failures(segment) \
                or isinstance(exception, tuple(segment.task.throws or ())):
            return
        k = self.keys(day)
        with r.pipeline(transaction=False) as p:
            for station in batch:
                p.hincrby(k.failures, f"{segment.name}:{station}", 1)
            failures = p.execute()
        if len(batch) == 1 and failures[0] >= POISON_AFTER:
            self.set_aside(r, k, segment, batch[0], f"{type(exception).__name__}: {exception}"[:300],
                           failures[0])

    def clear_failures(self, r: redis.Redis, day: str, segment: Segment | None, batch: list[str]) -> None:
        """A batch succeeded: its stations' failures are forgiven (they were in a batch with the poison)."""
        if segment is not None and batch and self.counts_failures(segment):
            r.hdel(self.keys(day).failures, *[f"{segment.name}:{station}" for station in batch])

    def halved(self, r: redis.Redis, k: keys.LoopKeys, segment: Segment, batch: list[str],
               size: int) -> list[str]:
        """`batch` (taken `size` at most) halved once for each failure its first station has seen."""
        if batch and self.counts_failures(segment):
            failed = int(r.hget(k.failures, f"{segment.name}:{batch[0]}") or 0)
            batch = batch[:max(1, size >> failed)]
        return batch

    def set_aside(self, r: redis.Redis, k: keys.LoopKeys, segment: Segment, station: str, why: str,
                  failures: int) -> None:
        """Take a poison station out of its segment's stage, with why, so the rest of the day goes on."""
        with r.pipeline() as p:
            p.hset(k.poison, station, json.dumps({"segment": segment.name, "detail": why,
                                                  "failures": failures, "at": time.time()}))
            p.zrem(getattr(k.segments, segment.source), station)
            p.hdel(k.failures, f"{segment.name}:{station}")
            p.execute()

    def poison(self, r: redis.Redis, day=None) -> dict[str, dict]:
        """The stations set aside: station -> {segment, detail, failures, at}."""
        return {station: json.loads(raw) for station, raw in r.hgetall(self.keys(day).poison).items()}

    # ---------------------------------------------------------------- a batch killed by its time limit

    def recover_killed(self, sender: Task, exception: BaseException | None, task_id: str, args) -> None:
        """A failure without the loop's headers: a batch sent by hand (nothing to do), or one killed by
        its hard time limit, whose task_failure comes from the worker's main process without its request."""
        if not sender.request.headers and isinstance(exception, TimeLimitExceeded) and len(args) > 1:
            self.after_time_limit(self.segment_of(sender), batch_of(args), args[1], task_id, exception)

    def after_time_limit(self, segment: Segment | None, batch: list[str], day: str, task_id: str,
                         exception: BaseException) -> None:
        """A batch killed by its hard time limit (worker's main process): count it, continue its chain."""
        r, k = redis_client(), self.keys(day)
        found, owner = lock.chain_of(r, k.turns, task_id), lock.owner(r, k.lock)
        if found is None or owner is None:
            return   # not a turn of the loop running now
        self.count_failure(r, k.day, segment, batch, exception)
        chain, number = found
        self.continue_chain(r, k.day, owner, Turn(chain, number, task_id), self.pause_after(exception))
