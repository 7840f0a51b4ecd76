"""The chapter's Celery app: one entry task per segment, each also on a beat schedule.

Started by hand (`fetch.run_segment.delay()`) or by beat, every segment finds its
work in Redis, so the schedule needs no arguments and no order: a tick with
nothing to do sends no batch (discover still lists the stations from the API each
time). Chapter 3 replaces the timer with signals.
"""
from workshop import settings as settings_mod
from workshop.celery_app import make_app

# The schedule is the app's configuration, read when a beat starts with this app.
_every = settings_mod.load().beat_interval

app = make_app("ch02_segmented", beat_schedule={
    f"{segment}-every-{_every:g}s": {"task": f"ch02_segmented.{segment}.run_segment", "schedule": _every}
    for segment in ("discover", "fetch", "transform", "persist")
})

# Register the tasks with the app, so `celery -A ch02_segmented.app worker` runs them.
from . import discover, fetch, transform, persist  # noqa: E402,F401
