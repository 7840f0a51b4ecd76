"""Chapter 4's loop at scale: one turn costs Redis the same on the first and the last turn of a big day.

Counted, not timed: Redis's own counters (INFO commandstats: every command, those
inside scripts too; INFO stats: the bytes it sent back) around each turn, on a
redis-server of this test's own, so nothing else is counted. A turn is what a
worker does for one message: the batch task's body, then the handlers of its
signals (the loop's `advance`, the history). The messages are run here, one after
the other, in this process (a recording `apply_async` instead of the broker), so
every turn of the day is seen and none is lost to timing.

    pytest tests/test_ch04_scale.py -s      # prints the figures per segment
"""
from __future__ import annotations

import statistics
from collections import defaultdict, deque

import pytest
from celery.app.task import Task
from celery.signals import task_postrun, task_prerun, task_success

from workshop import settings as settings_mod, stations as answer_key
from workshop.celery_app import redis_client
from workshop.own_redis import OwnRedis

from ch02_segmented import keys as segment_keys, pipeline as segment_pipeline, stages
from ch04_rate_limits import handlers, limiter, pipeline  # noqa: F401 (handlers: connected here, as in a worker)

from test_ch04_rate_limits import EXERCISES

pytestmark = pytest.mark.exercises(*EXERCISES)   # a whole day, in process

N = 20_000
BATCH = 50


def counters(r) -> tuple[int, int]:
    """(commands Redis ran so far, bytes it sent so far), in one INFO."""
    info = r.info("stats", "commandstats")
    return (sum(stat["calls"] for name, stat in info.items() if name.startswith("cmdstat_")),
            info["total_net_output_bytes"])


def run_message(task: Task, args: tuple, kwargs: dict, task_id: str, headers: dict) -> None:
    """What a worker's pool process does with a message, minus the broker: the body inside the task's
    request, the signals around it (the handlers are the lesson code's own)."""
    task.push_request(id=task_id, args=list(args), kwargs=kwargs, headers=headers, retries=0,
                      hostname="scale-test", delivery_info={"redelivered": False})
    try:
        task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
        result = task.run(*args, **kwargs)
        task_success.send(sender=task, result=result)
        task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs, retval=result,
                          state="SUCCESS")
    finally:
        task.pop_request()


def test_a_turn_costs_redis_the_same_commands_and_bytes_on_the_first_and_last_turn_of_20k_stations(
        tmp_path, monkeypatch, fake_api, redis_server):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        # Chapter 4's app reads REDIS_URL once, when its configuration is first used (the kick below does):
        # bind it to the session's Redis first, or it stays bound to this test's server after the test has
        # stopped it, for every later test in this process (its messages are recorded here, not published).
        assert pipeline.app.conf.broker_url == redis_server.url
        monkeypatch.setenv("REDIS_URL", own.url)
        monkeypatch.setenv("CH04_WINDOW", "2")
        # Fast and faultless: this test counts Redis's work, the API must not be what it waits for.
        fake_api(stations=N, rate=100_000, burst=1_000, max_batch=BATCH, error_rate=0.0, slow_rate=0.0,
                 malformed_rate=0.0)
        monkeypatch.setenv("API_MAX_BATCH", str(BATCH))
        monkeypatch.setenv("API_RATE", "100000")
        monkeypatch.setenv("API_BURST", "1000")
        r = redis_client()   # the lesson code's own client, now on this server
        day = settings_mod.load().day.isoformat()
        k, ids = segment_keys.Keys(day), answer_key.station_ids(N)
        stages.add(r, k.stations, ids)       # what discover leaves: the day's universe, all pending
        stages.add(r, k.pending, ids)
        db = str(tmp_path / "summaries.sqlite3")

        queue: deque = deque()

        def publish(self, args=None, kwargs=None, countdown=None, task_id=None, headers=None, **options):
            queue.append((self, tuple(args or ()), dict(kwargs or {}), task_id, dict(headers or {})))

        monkeypatch.setattr(Task, "apply_async", publish)
        pipeline.kick(r, day, db=db, limit=limiter.Limit(100_000, 1_000))

        cost: dict[str, list[tuple[int, int]]] = defaultdict(list)
        before = counters(r)
        while queue:
            task, args, kwargs, task_id, headers = queue.popleft()
            run_message(task, args, kwargs, task_id, headers)
            after = counters(r)
            cost[task.name.rsplit(".", 1)[-1]].append((after[0] - before[0], after[1] - before[1]))
            before = after
            assert sum(map(len, cost.values())) < 10 * N // BATCH, "the day does not end"

        outcome = segment_pipeline.outcome(r, day, db)
        assert outcome["done"] == N and outcome["wrong"] == outcome["missing"] == 0, outcome
        assert pipeline.LOOP.finished(r, day)

        print(f"\n{N} stations, batches of {BATCH}: Redis's work per turn, first tenth vs last tenth of "
              f"each segment's turns (median)")
        print(f"{'segment':<16}{'turns':>6}{'commands':>14}{'':>8}{'bytes sent':>16}")
        for segment in ("fetch_batch", "transform_batch", "persist_batch"):
            turns = cost[segment]
            assert len(turns) >= 20, f"{segment}: only {len(turns)} turns"
            tenth = len(turns) // 10
            # The very last turn of a segment may carry a shorter batch: leave it out, it is not the day's size.
            first, last = turns[1:tenth + 1], turns[-tenth - 1:-1]
            commands = [statistics.median(c for c, _ in part) for part in (first, last)]
            sent = [statistics.median(b for _, b in part) for part in (first, last)]
            print(f"{segment:<16}{len(turns):>6}{commands[0]:>8.0f} ->{commands[1]:>4.0f}"
                  f"{'':>8}{sent[0]:>8.0f} ->{sent[1]:>6.0f}")
            # Flat: the same within a few percent (ids of one length, INFO's own
            # reply, a health-check PING); a turn that reads a whole stage differs by thousands.
            assert max(commands) <= 1.02 * min(commands) + 3, f"{segment}: commands per turn {commands}"
            assert max(sent) <= 1.1 * min(sent) + 200, f"{segment}: bytes per turn {sent}"
    finally:
        own.stop_all()
