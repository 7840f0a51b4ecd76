"""What survives a Redis restart: the looped pipeline beside a naive one, Redis restarted mid-run.

Both runs get a redis-server of their own (append-only file on, as the compose
stack's Redis), two real worker processes and the same fake API. A third of the
way into the day Redis is stopped (SIGTERM: the append-only file holds every
write), left down a few seconds, and started again on the same port and data.

- naive (naive.py): one message per batch, acknowledged early. The messages a
  worker had prefetched sit in the broker's `unacked` hash; when the connection
  drops the worker forgets them, and Redis gives them back only once they are
  older than the visibility timeout (an hour by default). Restarting the
  workers does not bring them back. `stranded` reads them.
- looped (chapter 5's pipeline): the state of the day lives in Redis (pending,
  leased, fetched...), every step is idempotent and the chain of batches rides
  the outage (acks_late, publish retries), so the day completes. With its
  watchdog on beat, as in production (and the compose stack): if the outage
  breaks the chain (rare: a batch's end lost with the connection), the watchdog
  starts the loop again from what Redis holds; `watchdog_restarts` counts it.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_py
from celery import Celery

from ch02_segmented import database
from ch05_reporting import pipeline as looped
from workshop import selfcheck, settings as settings_mod, stations as answer_key
from workshop.own_redis import OwnRedis
from workshop.workers import BeatProcess, WorkerProcesses, child_env

from . import naive

# kombu's Redis transport (kombu/transport/redis.py): a message delivered to a consumer and not yet
# acknowledged is kept in this hash (delivery tag -> message) and its delivery time in this sorted set.
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
WORKERS = 2
DOWN_SECONDS = 3.0
RESTART_AT = 1 / 3          # the share of the day done when Redis is stopped
WATCHDOG_EVERY = 2          # seconds between the watchdog's rounds (BEAT_INTERVAL) in the looped day
# The API these runs meet (ApiConfig changes): fast and faultless, each request a 20 ms round trip, so that
# the restart, not the API, is what they meet. Give it a max_batch of at least BATCH_SIZE (the naive batch).
FAST_API = {"rate": 1000.0, "burst": 1000, "error_rate": 0.0, "slow_rate": 1.0, "slow_seconds": 0.02,
            "malformed_rate": 0.0}


def stranded(r: redis_py.Redis, now: float | None = None) -> list[dict]:
    """The messages Redis holds as delivered but not acknowledged, oldest first: for each, the task's name,
    its id, the stations it carries (its first argument, when that is a list) and its age in seconds."""
    # >>> exercise 6.1: read kombu's UNACKED hash (tag -> JSON [message, exchange, routing key]; the message's body is base64 JSON [args, kwargs, embed], its headers name the task and id) and UNACKED_INDEX (tag -> delivery time, epoch seconds: time.time(), which `now` defaults to); `r` answers str; one dict per message: task, id, stations, age; oldest first
    now = time.time() if now is None else now
    delivered = dict(r.zrange(UNACKED_INDEX, 0, -1, withscores=True))
    messages = []
    for tag, raw in r.hgetall(UNACKED).items():
        message, _exchange, _routing_key = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        first = args[0] if args else None
        messages.append({"task": message["headers"]["task"], "id": message["headers"]["id"],
                         "stations": list(first) if isinstance(first, list) else [],
                         "age": now - delivered.get(tag, now)})
    return sorted(messages, key=lambda m: -m["age"])
    # <<<


def stations_in(messages: list[dict]) -> set[str]:
    return {station for message in messages for station in message["stations"]}


class Restartable:
    """A redis-server of one's own (append-only) for one run, a client on it, and its restart."""

    def __init__(self, folder: str):
        self.own = OwnRedis(folder, appendonly=True)
        self.url = self.own.url
        self.server = self.own.start()
        self.r = redis_py.Redis.from_url(self.url, decode_responses=True)

    def restart(self, down: float = DOWN_SECONDS) -> float:
        """Stop Redis (SIGTERM), wait `down` seconds, start it again on the same port and data: seconds down."""
        self.own.stop(self.server)
        stopped = time.monotonic()
        time.sleep(down)
        self.server = self.own.start()
        return time.monotonic() - stopped

    def close(self) -> None:
        self.r.close()
        self.own.stop_all()


def _wait(progress, goal: int, timeout: float, still: float | None = None) -> int:
    """Poll `progress()` until it reaches `goal`, or (with `still`) stays put that many seconds; the last value."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while True:
        try:
            now = progress()
        except redis_py.ConnectionError:
            now = last
        if now != last:
            last, since = now, time.monotonic()
        if now >= goal or time.monotonic() > deadline or (still and time.monotonic() - since > still):
            return now
        time.sleep(0.05)


def _workers(app_module: str, url: str, log_dir: str, env: dict | None = None) -> WorkerProcesses:
    return WorkerProcesses(app_module, WORKERS, pool="prefork", concurrency=1, loglevel="WARNING",
                           env={"REDIS_URL": url, **(env or {})}, log_dir=log_dir).start()


def naive_day(api, stations: int, log_dir: str, visibility: float = 3600.0, timeout: float = 60.0,
              wait_after: float = 8.0) -> dict:
    """The naive pipeline's day across a Redis restart: what was stored, what is missing, what the broker
    holds unacknowledged, and what is still missing after the workers are restarted (and `wait_after`
    seconds more: a visibility timeout shorter than that gives the messages back)."""
    settings = settings_mod.load()
    day, ids = settings.day.isoformat(), answer_key.station_ids(stations)
    batches = [ids[i:i + settings.batch_size] for i in range(0, len(ids), settings.batch_size)]
    with tempfile.TemporaryDirectory(prefix="ch06-naive-") as folder:
        redis = Restartable(folder)
        try:
            def stored() -> int:
                return sum(redis.r.exists(*map(selfcheck.readings_key, batch)) for batch in batches)

            env = {naive.VISIBILITY_ENV: f"{visibility:g}"}
            workers = _workers("ch06_capstone.naive", redis.url, log_dir, env)
            try:
                sender = Celery("ch06-naive-sender", broker=redis.url, set_as_current=False)
                for batch in batches:
                    sender.send_task(naive.TASK, args=[batch, day], queue=naive.QUEUE)
                sender.close()
                started = time.monotonic()
                _wait(stored, int(RESTART_AT * stations), timeout)
                down = redis.restart()
                # Settled: the queue is empty (every message taken, done or stranded) and nothing more is stored.
                _wait(lambda: -redis.r.llen(naive.QUEUE), 0, timeout)
                settled = _wait(stored, stations, timeout, still=2.0)
                left = stranded(redis.r)
                before_restart = {"stored": settled, "stranded": len(left),
                                  "stranded_stations": sorted(stations_in(left)),
                                  "oldest": left[0]["age"] if left else 0.0}
                workers.stop()
                workers = _workers("ch06_capstone.naive", redis.url, log_dir, env)
                after = _wait(stored, stations, wait_after)
                failed = redis.r.hlen(selfcheck.FAILED)
                missing = [s for s in ids if not redis.r.exists(selfcheck.readings_key(s))]
            finally:
                workers.stop()
        finally:
            redis.close()
    return {"pipeline": "naive", "stations": stations, "down": down, "seconds": time.monotonic() - started,
            "visibility_timeout": visibility, **before_restart, "stored_after_worker_restart": after,
            "missing": len(missing), "missing_stations": missing, "failed": failed, "fetched_twice": _twice(api)}


KICK = """
import sys
from ch03_signals import pipeline as ch03_pipeline
from ch05_reporting import pipeline
from workshop.celery_app import redis_client
day, stations, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = redis_client()
pipeline.reset(r, day)
ch03_pipeline.discover(day, stations)
pipeline.kick(r, day, db=db)
"""


def looped_day(api, stations: int, log_dir: str, timeout: float = 60.0) -> dict:
    """Chapter 5's pipeline across the same restart: the answer key's outcome, and the API's fetches."""
    settings = settings_mod.load()
    day = settings.day.isoformat()
    with tempfile.TemporaryDirectory(prefix="ch06-looped-") as folder:
        redis = Restartable(folder)
        db = str(Path(folder) / "summaries.sqlite3")
        try:
            workers = _workers("ch05_reporting.app", redis.url, log_dir)
            watchdog = BeatProcess("ch05_reporting.app", log_dir=log_dir,
                                   env={"REDIS_URL": redis.url, "BEAT_INTERVAL": str(WATCHDOG_EVERY)})
            try:
                watchdog.start()
                # Kicked from a process of its own: this one's apps may be bound to another Redis (a notebook's).
                kick = subprocess.run([sys.executable, "-c", KICK, day, str(stations), db],
                                      env=child_env(env={"REDIS_URL": redis.url}),
                                      capture_output=True, text=True, timeout=60)
                if kick.returncode:
                    raise RuntimeError(f"the kick failed: {kick.stderr.strip()[-1500:]}")
                api.reset()                          # the day's calls only, not the listing
                started = time.monotonic()
                _wait(lambda: len(database.rows(db, day)) if Path(db).exists() else 0,
                      int(RESTART_AT * stations), timeout)
                down = redis.restart()
                finished = looped.LOOP.wait(redis.r, day, timeout)
                seconds = time.monotonic() - started
                outcome = looped.outcome(redis.r, day, db)
                left = stranded(redis.r)
                restarts = int(redis.r.get(looped.LOOP.keys(day).restarts) or 0)
            finally:
                watchdog.stop()
                workers.stop()
        finally:
            redis.close()
    return {"pipeline": "looped", "stations": stations, "down": down, "seconds": seconds, "finished": finished,
            **{k: v for k, v in outcome.items() if k != "stations"}, "stranded": len(left),
            "stranded_tasks": sorted(m["task"] for m in left), "watchdog_restarts": restarts,
            "fetched_twice": _twice(api)}


def _twice(api) -> int:
    return sum(n > 1 for n in api.stats()["fetches"].values())
