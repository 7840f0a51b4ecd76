"""Every handler of this app, connected to its batch tasks' signals: imported by each worker at start.

    task_success / task_failure  ->  the loop sends the next batch        (pipeline.LOOP)
    task_prerun / task_postrun   ->  one history entry per batch task      (history.py)
    task_failure                 ->  one error-log entry per failed task   (error_log.py)

The loop, the history and the error log connect nothing when imported; this
module is where the app says which handlers it runs. Drop the history's line and
the pipeline runs the same, without a history. Signals fire in the process that
runs the task (a worker's pool process), so this module must be in the app's
`include`: a handler connected only in the process that sends the tasks never runs.
"""
from __future__ import annotations

from . import error_log, history, tasks
from .pipeline import LOOP

LOOP.connect()
history.connect(*tasks.BATCH_TASKS)
error_log.connect(*tasks.BATCH_TASKS)
