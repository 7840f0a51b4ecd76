"""The pipeline's own signal: a run ended.

A custom Celery signal is the same kind of object as `task_success`
(celery.utils.dispatch.Signal): the loop *sends* it when a run ends, and whoever
cares *connects* to it. The loop does not know who listens: the report pipeline
(reporting.py) does, and the main pipeline runs the same without it.

Sent in the worker process whose task ended the loop (or in the process that
kicked a day with nothing to do), with:

    sender   the loop (a ReportingLoop)
    run      the run's id, "2026-01-15.1"
    day      its day
    outcome  "finished", "stopped" or "budget spent"

As with Celery's own signals, a receiver that raises is logged and the others
still run: a broken report never stops the loop.
"""
from __future__ import annotations

from celery.utils.dispatch import Signal

try:
    # >>> exercise 5.1, part 1 of 3: define run_finished, a celery Signal (celery.utils.dispatch.Signal) named "run_finished" whose receivers are given run, day and outcome
    run_finished = Signal(name="run_finished", providing_args={"run", "day", "outcome"})
    # <<<
except NotImplementedError:   # not defined yet: the chapter still imports, and `make check EX=5.1` says so
    run_finished = None
