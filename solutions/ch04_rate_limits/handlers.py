"""Every handler of this app, connected to its tasks' signals: imported by each worker at start.

Chapter 3's handlers.py, for this app's tasks: both loops (the global limiter's and
the per-worker one, each on its own fetch task), and chapter 3's history and
error log, untouched, only pointed at this chapter's streams. And one handler in
the worker's main process: every delivery of a fetch batch counted when it is
received (deliveries.py).
"""
from __future__ import annotations

from ch03_signals import error_log, history

from . import deliveries, tasks
from .pipeline import ERRORS, HISTORY, LOOPS

for _loop in LOOPS.values():
    _loop.connect()
deliveries.connect(*LOOPS.values())
history.connect(*tasks.BATCH_TASKS, stream=HISTORY)
error_log.connect(*tasks.BATCH_TASKS, stream=ERRORS)
