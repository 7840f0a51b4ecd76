"""What one turn of the loop costs Redis, counted (not timed): round trips, and commands inside Redis.

A turn is what a worker does for one message: its receipt (in the worker's main
process: deliveries.py), then, in the pool process, the task's body and the
handlers of its signals (the loop's next turn, the history). Here the messages run
one after the other in this process (a recording `apply_async` instead of the
broker, so no turn is lost to timing), with

- round trips: the requests this process sends to Redis (a command, a pipeline,
  a script: one each), counted in redis-py's connection (`counting()`), the
  receipt's apart from the pool process's; the publish of the next message goes
  to the broker and is not one of them (a raw task publishes too);
- commands: INFO commandstats, before and after: every command Redis ran, those
  inside scripts too (INFO itself left out). On a Redis of the caller's own, so
  nothing else is counted.

Used by tests/test_ch04_scale.py (the figures, and that they stay flat over a
day) and `make bench-scale` (which prints them beside its timings).
"""
from __future__ import annotations

import contextlib
import statistics
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Iterator
from unittest import mock

import redis
from celery.app.task import Task
from celery.signals import task_postrun, task_prerun, task_success
from redis.connection import AbstractConnection

from ch02_segmented import keys as segment_keys, stages

from . import leases, limiter, pipeline, retries
from .keys import for_day

NOT_COUNTED = {"info", "ping", "hello", "client|setinfo", "client|setname"}   # the counting's own, the handshake's


class RoundTrips:
    """Requests sent to Redis from this process while `counting()`: one per command, pipeline or script."""

    def __init__(self) -> None:
        self.sent, self.paused = 0, False

    @contextlib.contextmanager
    def counting(self) -> Iterator["RoundTrips"]:
        original = AbstractConnection.send_packed_command
        counter = self

        def send_packed_command(connection, command, check_health=True):
            if check_health and not counter.paused:   # a health check or a handshake is not a request of ours
                counter.sent += 1
            return original(connection, command, check_health)

        with mock.patch.object(AbstractConnection, "send_packed_command", send_packed_command):
            yield self

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        self.paused = True
        try:
            yield
        finally:
            self.paused = False


def commands(r: redis.Redis) -> int:
    """Commands Redis ran so far (scripts' commands included), less the counting's own."""
    stats = r.info("commandstats")
    return sum(stat["calls"] for name, stat in stats.items()
               if name.startswith("cmdstat_") and name.removeprefix("cmdstat_") not in NOT_COUNTED)


@dataclass(frozen=True)
class Cost:
    """One turn: round trips from the pool process, from the main process (the receipt), commands in Redis."""

    round_trips: int
    receipt: int
    commands: int


def run_message(task: Task, args: tuple, kwargs: dict, task_id: str, headers: dict) -> None:
    """What a worker's pool process does with a message, minus the broker: the body inside the task's
    request, the signals around it (the handlers are the lesson code's own)."""
    task.push_request(id=task_id, args=list(args), kwargs=kwargs, headers=headers, retries=0,
                      hostname="turn-cost", delivery_info={"redelivered": False})
    try:
        task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
        result = task.run(*args, **kwargs)
        task_success.send(sender=task, result=result)
        task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs, retval=result,
                          state="SUCCESS")
    finally:
        task.pop_request()


def count_day(r: redis.Redis, day: str, stations: list[str], db: str,
              limit: limiter.Limit = limiter.Limit(100_000, 1_000), max_turns: int | None = None
              ) -> dict[str, list[Cost]]:
    """Run chapter 4's loop over a fresh day of `stations` in this process: each turn's Cost, per task
    ("fetch_batch", "transform_batch", "persist_batch", "wait"), in order. `r` is the lesson code's client,
    on a Redis of the caller's own; the API and its limit come from the environment, as in a worker.
    `max_turns`: stop after that many (the figures of the first turns only)."""
    from . import handlers  # noqa: F401 (the loop's handlers connected in this process, as in a worker)

    k = segment_keys.Keys(day)
    pipeline.reset(r, day)
    stages.add(r, k.stations, stations)   # what discover leaves: the day's universe, all pending
    stages.add(r, k.pending, stations)
    queue: deque = deque()

    def publish(self, args=None, kwargs=None, countdown=None, task_id=None, headers=None, **options):
        queue.append((self, tuple(args or ()), dict(kwargs or {}), task_id, dict(headers or {})))

    cost: dict[str, list[Cost]] = defaultdict(list)
    trips = RoundTrips()
    with mock.patch.object(Task, "apply_async", publish), trips.counting():
        pipeline.kick(r, day, db=db, limit=limit)
        with trips.pause():
            before = commands(r)
        while queue and (max_turns is None or sum(map(len, cost.values())) < max_turns):
            task, args, kwargs, task_id, headers = queue.popleft()
            sent = trips.sent
            if task.name == pipeline.LOOP.fetch.task.name:   # the receipt, in the worker's main process
                retries.count_delivery(r, for_day(day), list(args[0]), leases.token(task_id or "", 0))
            receipt, sent = trips.sent - sent, trips.sent
            run_message(task, args, kwargs, task_id, headers)
            turn_trips = trips.sent - sent
            with trips.pause():
                after = commands(r)
            cost[task.name.rsplit(".", 1)[-1]].append(Cost(turn_trips, receipt, after - before))
            before = after
            if sum(map(len, cost.values())) > 10 * len(stations) + 100:
                raise RuntimeError("the day does not end: more turns than ten per station")
    return dict(cost)


def median(turns: list[Cost]) -> Cost:
    """The median turn (each figure's median): the day's last batch may be shorter, a wait turn rarer."""
    return Cost(*(int(statistics.median(getattr(t, field) for t in turns)) for field in Cost.__dataclass_fields__))
