"""Chapter 5's Celery app: chapter 4's crash-safe loop with runs, and the report pipeline beside it.

    celery -A ch05_reporting.app worker -c 1     # as many as you like: one limit, one budget per run
    celery -A ch05_reporting.app beat            # the watchdog

`include` is the whole coupling: the report pipeline (reporting.py) is loaded by
every worker because it is listed here, and it hangs itself on the loop's
`run_finished` signal. Take it out of the list and the pipeline runs the same,
unreported.
"""
from __future__ import annotations

from ch03_signals.app import beat_schedule as ch03_beat_schedule
from ch04_rate_limits import safety
from workshop import settings as settings_mod
from workshop.celery_app import make_app

WATCHDOG = "ch05_reporting.watchdog"
REPORTING = "ch05_reporting.reporting"
MAIN = ["ch05_reporting.tasks", "ch05_reporting.handlers", "ch05_reporting.watchdog"]

app = make_app("ch05_reporting", task_ignore_result=True, **safety.CRASH_SAFE, include=[*MAIN, REPORTING])


def beat_schedule(settings: settings_mod.Settings | None = None) -> dict:
    """Chapter 3's one entry, the watchdog every BEAT_INTERVAL seconds, pointed at this app's watchdog."""
    return {name: {**entry, "task": WATCHDOG} for name, entry in ch03_beat_schedule(settings).items()}


app.add_defaults(lambda: {"beat_schedule": beat_schedule()})
