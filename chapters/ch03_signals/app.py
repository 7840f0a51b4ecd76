# Exercise copy of solutions/ch03_signals/app.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 3's Celery app: the loop's batch tasks and one beat entry, the watchdog.

    celery -A ch03_signals.app worker -c 2      # any number of workers: still one loop per day
    celery -A ch03_signals.app beat             # only for the watchdog; no schedule drives the work

The modules in `include` are imported by every worker when it starts: the tasks,
the handlers (handlers.py connects the loop, the history and the error log to
the tasks' signals) and the watchdog. They import this module, not the other way
round.
"""
from __future__ import annotations

from workshop import settings as settings_mod
from workshop.celery_app import make_app

WATCHDOG = "ch03_signals.watchdog"

# No task stores a result: the loop, the history and the error log learn everything from signals.
app = make_app("ch03_signals", task_ignore_result=True, include=[
    "ch03_signals.tasks",       # the batch tasks
    "ch03_signals.handlers",    # the loop, the history and the error log, on the tasks' signals
    "ch03_signals.watchdog",    # the beat task that restarts a dead loop
])


def beat_schedule(settings: settings_mod.Settings | None = None) -> dict:
    """One entry: the watchdog, every BEAT_INTERVAL seconds. Cheap: a few Redis reads per tick."""
    s = settings or settings_mod.load()
    return {"loop-watchdog": {"task": WATCHDOG, "schedule": s.beat_interval}}


# Read when the app is first configured (a beat process: at start). In a process that already
# used the app, assign `app.conf.beat_schedule = beat_schedule()` to pick up a new interval.
app.add_defaults(lambda: {"beat_schedule": beat_schedule()})
