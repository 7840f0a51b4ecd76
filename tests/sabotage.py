"""Chapter 4's app, sabotaged on purpose, for tests/test_ch04_reliability.py (not lesson code).

    celery -A sabotage worker        # with tests/ on PYTHONPATH; what goes wrong comes from the environment

- SABOTAGE_KILL_FETCH=<station, or * for every batch>: a fetch whose batch holds it SIGKILLs its own pool process at the API call
  (a segfault in a client library, the OOM killer), on every delivery.
- SABOTAGE_KILL_PRERUN=<station, or *>: a fetch whose batch holds it SIGKILLs its own pool process in a
  task_prerun handler, before the task body starts (an OOM while deserialising, a crashing C extension, another
  prerun handler), on every delivery. Each kill is counted in PRERUN_KILLS_KEY (a hash task id -> kills) first.
- SABOTAGE_HANG_FETCH=<station, or *> and SABOTAGE_TIME_LIMIT=<s>: such a fetch hangs at the API call, and
  the fetch task's hard time limit (no soft one) is <s> seconds: it is killed on every try. A message carries
  its sender's time limits: a batch sent by the test process itself (a kick's first ones) keeps the app's own.
  With SABOTAGE_HANG_WHILE=<Redis key>, it hangs only while that key exists (the API comes back when the
  test deletes it). Each call that hangs is counted in HUNG_KEY.
- SABOTAGE_KILL_AFTER=<task short name, e.g. fetch_batch>: the first pool process that finishes such a
  task of the loop's lead chain kills itself right after the task's success handlers ran (the next batch
  is sent), before the message is acknowledged: the message comes back. Once per Redis (SET NX on KILLED_KEY).

Every station persisted is counted in PERSISTED_KEY (a hash station -> times), so a test can tell a
station persisted twice from one persisted once.
"""
import os
import signal
import time

from celery.signals import task_prerun, task_success

from ch02_segmented import database
from ch04_rate_limits import handlers, client, pipeline, tasks   # handlers first: the loop's handlers connect first
from ch04_rate_limits.app import app
from workshop.celery_app import redis_client

KILLED_KEY, PERSISTED_KEY, HUNG_KEY = "sabotage:killed-after-success", "sabotage:persisted", "sabotage:hung"
PRERUN_KILLS_KEY = "sabotage:prerun-kills"
KILL_FETCH, HANG_FETCH = os.environ.get("SABOTAGE_KILL_FETCH"), os.environ.get("SABOTAGE_HANG_FETCH")
KILL_PRERUN = os.environ.get("SABOTAGE_KILL_PRERUN")
HANG_WHILE = os.environ.get("SABOTAGE_HANG_WHILE")
KILL_AFTER = os.environ.get("SABOTAGE_KILL_AFTER")

__all__ = ["app", "pipeline"]

_fetch, _upsert = client.fetch, database.upsert


def _hit(station: str | None, batch) -> bool:
    return station is not None and (station == "*" or station in batch)


def _sabotaged_fetch(batch, day, settings=None):
    if _hit(KILL_FETCH, batch):
        os.kill(os.getpid(), signal.SIGKILL)
    if _hit(HANG_FETCH, batch) and (not HANG_WHILE or redis_client().exists(HANG_WHILE)):
        redis_client().incr(HUNG_KEY)
        time.sleep(3600)
    return _fetch(batch, day, settings)


def _counted_upsert(conn, summaries):
    summaries = list(summaries)
    if summaries:
        with redis_client().pipeline(transaction=False) as p:
            for summary in summaries:
                p.hincrby(PERSISTED_KEY, summary["station"], 1)
            p.execute()
    return _upsert(conn, summaries)


client.fetch, database.upsert = _sabotaged_fetch, _counted_upsert
if os.environ.get("SABOTAGE_TIME_LIMIT"):   # annotations: applied when the app binds its tasks, before any runs
    app.conf.task_annotations = {"ch04_rate_limits.fetch_batch": {
        "time_limit": float(os.environ["SABOTAGE_TIME_LIMIT"]), "soft_time_limit": None}}


def _kill_after_success(sender, **_):
    headers = sender.request.headers or {}
    lead = headers.get("loop_chain", "0") == "0" and not headers.get("loop_helper")   # (the latter: before turns)
    if lead and redis_client().set(KILLED_KEY, sender.request.id, nx=True):
        os.kill(os.getpid(), signal.SIGKILL)


if KILL_AFTER:
    # Connected after the loop's own handler (imported above), so it runs after the next batch was sent.
    task_success.connect(_kill_after_success, sender=getattr(tasks, KILL_AFTER), weak=False)


def _kill_in_prerun(sender, task_id=None, args=(), **_):
    if args and _hit(KILL_PRERUN, args[0]):
        redis_client().hincrby(PRERUN_KILLS_KEY, task_id, 1)
        os.kill(os.getpid(), signal.SIGKILL)


if KILL_PRERUN:
    task_prerun.connect(_kill_in_prerun, sender=tasks.fetch_batch, weak=False)
