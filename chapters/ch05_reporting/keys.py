# Exercise copy of solutions/ch05_reporting/keys.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Where chapter 5 keeps its runs and findings in Redis.

A *run* is one kick's worth of work on a day: it opens when a loop starts with no
run open, and closes when that loop ends (finished, stopped, or out of budget).
A loop restarted by the watchdog, or kicked again while the run is open, goes on
in the same run. Its id is the day and a number: "2026-01-15.3".

Every key of a run carries its *day* as the hash tag (`run:{2026-01-15}:3`), like
the loop's and the stages' keys: on a Redis Cluster a day's loop, its stages and its
runs share one slot, so the loop's end can close the run in the same script. The
one key that spans days, `runs:days`, is only ever written outside the scripts.
"""
from __future__ import annotations

from dataclasses import dataclass


def open_run(day: str) -> str:      # string: the id of the run open on this day
    return f"runs:{{{day}}}:open"


def sequence(day: str) -> str:      # counter: the last run number of this day
    return f"runs:{{{day}}}:seq"


def unreported(day: str) -> str:    # set: runs of this day that ended and have no report yet
    return f"runs:{{{day}}}:unreported"


DAYS = "runs:days"                  # set: days that have had a run (where the report sweep looks)


def quality(day: str) -> str:       # hash: station -> JSON list of its findings (quality.py)
    return f"quality:{{{day}}}"


def day_of_run(run: str) -> str:
    return run.rsplit(".", 1)[0]


@dataclass(frozen=True)
class RunKeys:
    run: str

    @property
    def base(self) -> str:
        day, number = self.run.rsplit(".", 1)
        return f"run:{{{day}}}:{number}"

    @property
    def record(self) -> str:        # hash: day, started, ended, outcome, budget_micro, spent_micro, exhausted
        return self.base

    @property
    def counters(self) -> str:      # hash: calls, requests, status:<code>, retries, stations_fetched, cost_micro
        return f"{self.base}:counters"

    @property
    def reserved(self) -> str:      # hash: call id -> what it reserved, then "settled" (each call once)
        return f"{self.base}:reserved"

    @property
    def calls(self) -> str:         # stream: one entry per API call (at, status, stations, cost_micro, retry)
        return f"{self.base}:calls"

    @property
    def asked(self) -> str:         # set: stations this run asked the API for (a second ask is a retry)
        return f"{self.base}:asked"

    @property
    def report_sent(self) -> str:   # string: a report task was sent for this run (expires: then sent again)
        return f"{self.base}:report-sent"

    def all(self) -> list[str]:
        return [self.record, self.counters, self.reserved, self.calls, self.asked, self.report_sent]
