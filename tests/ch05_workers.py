"""Chapter 5's app as the tests run it (not lesson code): `celery -A ch05_workers worker`, tests/ on PYTHONPATH.

- CH05_WITHOUT_REPORTING=1: the app without the report pipeline in its `include` (the main pipeline's
  modules only): the pipeline must run the same.
- Redis key KILL_REPORT_KEY set: the next report task SIGKILLs its own pool process once, as it starts
  writing (a crash mid-report); the key is deleted as it does, so the redelivery goes through.
"""
import os
import signal

from ch05_reporting import app as app_module

if os.environ.get("CH05_WITHOUT_REPORTING"):
    app_module.app.conf.include = list(app_module.MAIN)   # before the worker imports its modules

from ch05_reporting import report   # noqa: E402 (not the report pipeline: its figures only)
from workshop.celery_app import redis_client   # noqa: E402

app = app_module.app
KILL_REPORT_KEY, KILLED_REPORT_KEY = "ch05-test:kill-report", "ch05-test:killed-report"

_figures = report.figures


def _killing_figures(r, run, *args, **kwargs):
    if redis_client().delete(KILL_REPORT_KEY):
        redis_client().set(KILLED_REPORT_KEY, run)
        os.kill(os.getpid(), signal.SIGKILL)
    return _figures(r, run, *args, **kwargs)


report.figures = _killing_figures
