# Exercise copy of solutions/ch05_reporting/reporting.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""The report pipeline: started by the loop's `run_finished` signal, never imported by the pipeline.

    loop ends a run ──run_finished──> on_run_finished ──SET NX──> report_run task
                                                                  ├─ runs table row (upsert)
                                                                  ├─ HTML page (written whole)
                                                                  └─ run no longer unreported

Listed in the app's `include`, so every worker imports it and connects its
handler; remove it from there and the pipeline runs the same, unreported.

A run is reported once, whatever happens:
- many ends cannot send it twice: the run closes once, in the loop's end script
  (runs.close_lua), and the handler sends the task only if it is the first to claim
  the run (SET NX, safe sent twice: the claim carries an id of its own);
- a worker killed while reporting: the message comes back (acks_late,
  reject_on_worker_lost: the app is crash-safe), and the task writes the same
  row and page again;
- a worker killed between the run's close and the signal, or a lost message: the
  run stays in its day's unreported set, and the claim expires; each watchdog round (its
  task_postrun, another signal) sends the report of such a run again.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from celery.signals import task_postrun

from ch04_rate_limits import dead_letters
from ch04_rate_limits.keys import for_day
from workshop.celery_app import redis_client

from . import quality, report, runs, runs_table, watchdog
from .app import app
from .keys import RunKeys
from .pipeline import LOOP
from .signals import run_finished

log = logging.getLogger(__name__)

REPORTS_ENV = "CH05_REPORTS"
CLAIM_SECONDS = 60   # a claimed report not written by then is sent again (the watchdog's round)


def reports_dir() -> Path:
    return Path(os.environ.get(REPORTS_ENV) or Path(tempfile.gettempdir()) / "ch05_reports")


def page_path(run: str) -> Path:
    return reports_dir() / f"run-{run}.html"


@app.task(name="ch05_reporting.report_run")
def report_run(run: str, db: str | None = None) -> dict:
    """Persist the run's figures, write its page; the same result however often it runs."""
    r = redis_client()
    row = report.figures(r, run, db)
    runs_table.upsert(row, db)
    path = page_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = report.page(row, runs.record(r, run)["calls"], quality.findings(r, row["day"]),
                       dead_letters.dead_letters(r, for_day(row["day"])), runs_table.rows(db, row["day"]))
    # A name of this writer's own (two report tasks of one run may run at once), then one rename: a
    # reader sees the old page or the new one, never half of one.
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
    runs.reported(r, run)
    log.info("%s", report.verdict(row))
    return {"run": run, "outcome": row["outcome"], "page": str(path)}


def send_report(r, run: str) -> bool:
    """Send the run's report task unless one was sent within CLAIM_SECONDS; whether this call sent it.

    The claim is SET NX with a value of this call's own, read back (GET): the same SET sent twice
    (a lost reply) finds its own claim and still sends, rather than leave the report to the sweep."""
    claim = uuid.uuid4().hex
    if r.set(RunKeys(run).report_sent, claim, nx=True, ex=CLAIM_SECONDS, get=True) not in (None, claim):
        return False
    day = r.hget(RunKeys(run).record, "day")
    report_run.apply_async((run,), {"db": r.hget(LOOP.keys(day).options, "db")})
    return True


def on_run_finished(sender, run: str, day: str, outcome: str, **_) -> None:
    """run_finished: start the run's report."""
    send_report(redis_client(), run)


def sweep(**_) -> None:
    """After each watchdog round: the report of every ended run still unreported, unless one is on its way."""
    r = redis_client()
    for run in runs.unreported_runs(r):
        if send_report(r, run):
            log.warning("reporting: run %s ended without a report: sent its report again", run)


try:
    # exercise 5.1, part 3 of 3: connect on_run_finished to run_finished, for the sends of this pipeline's loop (LOOP) only, and once however often this module is imported (dispatch_uid)
    raise NotImplementedError("exercise 5.1, part 3 of 3: connect on_run_finished to run_finished, for the sends of this pipeline's loop (LOOP) only, and once however often this module is imported (dispatch_uid)")
except NotImplementedError:   # not connected yet: the pipeline runs, unreported, and `make check EX=5.1` says so
    pass
task_postrun.connect(sweep, sender=watchdog.watchdog, weak=False, dispatch_uid="ch05:report-sweep")


def wait(r, run: str, timeout: float = 30.0, db: str | None = None) -> dict | None:
    """The run's row once its report is written, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runs.is_unreported(r, run):
            found = runs_table.row(run, db)
            if found is not None:
                return found
        time.sleep(0.1)
    return None
