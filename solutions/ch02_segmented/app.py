"""The chapter's Celery app: one entry task per segment, each also on a beat schedule.

Started by hand (`fetch.run_segment.delay()`) or by beat, every segment finds its
work in Redis, so the schedule needs no arguments and no order: a tick with
nothing to do sends no batch (discover still lists the stations from the API each
time). Chapter 3 replaces the timer with signals.
"""
from __future__ import annotations

from workshop import settings as settings_mod
from workshop.celery_app import make_app

from .keys import SEGMENTS

app = make_app("ch02_segmented")


def beat_schedule(settings: settings_mod.Settings | None = None) -> dict:
    """Every segment's entry task every `beat_interval` seconds, with no arguments."""
    every = (settings or settings_mod.load()).beat_interval
    return {f"{segment}-every-{every:g}s": {"task": f"ch02_segmented.{segment}.run_segment", "schedule": every}
            for segment in SEGMENTS}


# Read when the app is first configured (a beat process, an EmbeddedBeat: at start), not at
# import. In a process that already used the app, assign `app.conf.beat_schedule = beat_schedule()`.
app.add_defaults(lambda: {"beat_schedule": beat_schedule()})

# Register the tasks with the app, so `celery -A ch02_segmented.app worker` runs them.
from . import discover, fetch, transform, persist  # noqa: E402,F401
