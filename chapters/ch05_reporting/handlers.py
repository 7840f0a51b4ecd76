# Exercise copy of solutions/ch05_reporting/handlers.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The main pipeline's handlers, connected to its tasks' signals: imported by each worker at start.

Chapter 4's handlers.py for this app: the loop, its fetch deliveries counted on
receipt (chapter 4's deliveries.py), and chapter 3's history and error log. The
report pipeline's handler is not here: it is reporting.py's own.
"""
from __future__ import annotations

from ch03_signals import error_log, history
from ch04_rate_limits import deliveries

from . import tasks
from .pipeline import ERRORS, HISTORY, LOOP

LOOP.connect()
deliveries.connect(LOOP)
history.connect(*tasks.BATCH_TASKS, stream=HISTORY)
error_log.connect(*tasks.BATCH_TASKS, stream=ERRORS)
