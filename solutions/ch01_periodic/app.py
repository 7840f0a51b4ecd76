"""Chapter 1's Celery app: the monolith's task, and a beat schedule that sends it every BEAT_INTERVAL seconds.

    celery -A ch01_periodic.app worker -c 2      # two runs may work at once
    celery -A ch01_periodic.app beat             # exactly one beat
"""
from __future__ import annotations

from workshop import settings as settings_mod
from workshop.celery_app import make_app

RUN_SLICE = "ch01_periodic.run_slice"

app = make_app("ch01_periodic", include=["ch01_periodic.pipeline"])


def beat_schedule(settings: settings_mod.Settings | None = None) -> dict:
    """One entry: run_slice every `beat_interval` seconds, whether the last run has finished or not."""
    s = settings or settings_mod.load()
    return {"run-slice": {"task": RUN_SLICE, "schedule": s.beat_interval}}


# Read when the app is first configured (a beat process: at start). In a process that
# already used the app, assign `app.conf.beat_schedule = beat_schedule()` to pick up a new interval.
app.add_defaults(lambda: {"beat_schedule": beat_schedule()})
