# Exercise copy of solutions/ch05_reporting/keys.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Where chapter 5 keeps its runs and findings in Redis.

A *run* is one kick's worth of work on a day: it opens when a loop starts with no
run open, and closes when that loop ends (finished, stopped, or out of budget).
A loop restarted by the watchdog, or kicked again while the run is open, goes on
in the same run. Its id is the day and a number: "2026-01-15.3".
"""
from __future__ import annotations

from dataclasses import dataclass


def open_run(day: str) -> str:      # string: the id of the run open on this day
    return f"runs:{{{day}}}:open"


def sequence(day: str) -> str:      # counter: the last run number of this day
    return f"runs:{{{day}}}:seq"


UNREPORTED = "runs:unreported"      # set: runs that ended and have no report yet


def quality(day: str) -> str:       # hash: station -> JSON list of its findings (quality.py)
    return f"quality:{{{day}}}"


@dataclass(frozen=True)
class RunKeys:
    run: str

    @property
    def record(self) -> str:        # hash: day, started, ended, outcome, budget_micro, spent_micro, exhausted
        return f"run:{{{self.run}}}"

    @property
    def counters(self) -> str:      # hash: requests, status:<code>, no_answer, retries, stations_fetched, cost_micro
        return f"run:{{{self.run}}}:counters"

    @property
    def calls(self) -> str:         # stream: one entry per API call (at, status, stations, cost_micro, retry)
        return f"run:{{{self.run}}}:calls"

    @property
    def asked(self) -> str:         # set: stations this run asked the API for (a second ask is a retry)
        return f"run:{{{self.run}}}:asked"

    @property
    def report_sent(self) -> str:   # string: a report task was sent for this run (expires: then sent again)
        return f"run:{{{self.run}}}:report-sent"

    def all(self) -> list[str]:
        return [self.record, self.counters, self.calls, self.asked, self.report_sent]
