"""Chapter 4's Celery app: crash-safe settings, the leased and rate-limited loop, the watchdog on beat.

    celery -A ch04_rate_limits.app worker -c 1     # as many as you like, on as many hosts: one limit
    celery -A ch04_rate_limits.app beat            # only for the watchdog

Every worker imports the modules in `include` at start: the tasks, the handlers
(handlers.py: the loops, chapter 3's history and error log, pointed at this
app's tasks), and the watchdog.
"""
from __future__ import annotations

from ch03_signals.app import beat_schedule as ch03_beat_schedule
from workshop import settings as settings_mod
from workshop.celery_app import make_app

from . import safety

WATCHDOG = "ch04_rate_limits.watchdog"

app = make_app("ch04_rate_limits", task_ignore_result=True, **safety.CRASH_SAFE, include=[
    "ch04_rate_limits.tasks",
    "ch04_rate_limits.handlers",   # both loops, chapter 3's history and error log, on the tasks' signals
    "ch04_rate_limits.watchdog",
])


def beat_schedule(settings: settings_mod.Settings | None = None) -> dict:
    """Chapter 3's one entry, the watchdog every BEAT_INTERVAL seconds, pointed at this app's watchdog."""
    return {name: {**entry, "task": WATCHDOG} for name, entry in ch03_beat_schedule(settings).items()}


app.add_defaults(lambda: {"beat_schedule": beat_schedule()})
