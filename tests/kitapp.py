"""A tiny Celery app for testing the kit's workers and beat (not lesson code)."""
import os

from workshop.celery_app import make_app

app = make_app("kitapp", beat_schedule={
    "tick": {"task": "kitapp.record", "schedule": 0.5, "args": ("kitapp:ticks",)},
})


@app.task(name="kitapp.record")
def record(key: str) -> int:
    """Append this process's PID to a Redis list: who ran it, and how often."""
    return app.backend.client.rpush(key, os.getpid())


@app.task(name="kitapp.sleep_then_record")
def sleep_then_record(key: str, seconds: float) -> int:
    import time
    app.backend.client.rpush(key + ":started", os.getpid())
    time.sleep(seconds)
    return app.backend.client.rpush(key, os.getpid())
