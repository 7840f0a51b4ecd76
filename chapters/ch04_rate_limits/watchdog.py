# Exercise copy of solutions/ch04_rate_limits/watchdog.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 3's watchdog, looking after this app's loops.

The check is chapter 3's (no lock, no stop switch, work left: start again). Here
"work left" includes leases in flight (next_step waits for them), so a loop whose
workers all died mid-batch is restarted, and the restarted loop's first turn
reaps the leases that expired.
"""
from __future__ import annotations

from workshop.celery_app import redis_client
from ch03_signals import watchdog as ch03_watchdog

from .app import WATCHDOG, app
from .pipeline import LOOPS


@app.task(name=WATCHDOG)
def watchdog() -> dict[str, dict[str, str]]:
    r = redis_client()
    return {name: ch03_watchdog.check(r, loop) for name, loop in LOOPS.items()}
