"""Chapter 5's app as the tests run it (not lesson code): `celery -A ch05_workers worker`, tests/ on PYTHONPATH.

- CH05_WITHOUT_REPORTING=1: the app without the report pipeline in its `include` (the main pipeline's
  modules only): the pipeline must run the same.
- Redis key KILL_REPORT_KEY set: the next report task SIGKILLs its own pool process once, as it starts
  writing (a crash mid-report); the key is deleted as it does, so the redelivery goes through.
- Redis key KILL_AFTER_ANSWER_KEY = a station: the next fetch whose batch holds it SIGKILLs its own pool
  process right after the API answered, before the call is settled (recorded); once (the key is deleted).
"""
import os
import signal

from ch05_reporting import app as app_module

if os.environ.get("CH05_WITHOUT_REPORTING"):
    app_module.app.conf.include = list(app_module.MAIN)   # before the worker imports its modules

from ch04_rate_limits import client   # noqa: E402
from ch05_reporting import report   # noqa: E402 (not the report pipeline: its figures only)
import functools   # noqa: E402

from celery.signals import worker_process_init   # noqa: E402

import redis   # noqa: E402


@functools.cache
def redis_client() -> redis.Redis:
    """The test's own switches are read with a plain client: under REDIS_FAULTS the pipeline's client sends
    some commands twice, and a DELETE sent twice would answer 0 and the sabotage would never fire."""
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)

app = app_module.app
KILL_REPORT_KEY, KILLED_REPORT_KEY = "ch05-test:kill-report", "ch05-test:killed-report"
KILL_AFTER_ANSWER_KEY, KILLED_AFTER_ANSWER_KEY = "ch05-test:kill-after-answer", "ch05-test:killed-after-answer"

_figures = report.figures


def _killing_figures(r, run, *args, **kwargs):
    if redis_client().delete(KILL_REPORT_KEY):
        redis_client().set(KILLED_REPORT_KEY, run)
        os.kill(os.getpid(), signal.SIGKILL)
    return _figures(r, run, *args, **kwargs)


_fetch = client.fetch


def _killing_fetch(batch, day, settings=None):
    readings = _fetch(batch, day, settings)
    station = redis_client().get(KILL_AFTER_ANSWER_KEY)
    if station in batch and redis_client().delete(KILL_AFTER_ANSWER_KEY):
        redis_client().set(KILLED_AFTER_ANSWER_KEY, ",".join(batch))
        os.kill(os.getpid(), signal.SIGKILL)
    return readings


@worker_process_init.connect(weak=False)
def _sabotage(**_) -> None:
    """In the worker's pool processes only: the test process imports this module for its key names, and must
    keep the real `client.fetch` and `report.figures` (a test that counts a turn's round trips runs there)."""
    report.figures = _killing_figures
    client.fetch = _killing_fetch
