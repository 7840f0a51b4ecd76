# Exercise copy of solutions/ch05_reporting/loop.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Chapter 4's leased loop, with runs: a budget it spends from, and a signal when a run ends.

Three changes, each in one of chapter 3's and 4's hooks:

- `begin` (a loop starts): it goes on in the day's open run, or opens one with
  the budget the kick brought; the run's id travels to every fetch as an option.
- `takes_work` and `lease` (what is work): once the run's budget is exhausted,
  fetch takes no more batches; transform and persist go on with what was fetched.
  The loop then ends as chapter 3's does, with the unfetched stations still pending.
- `end` (the loop ended): the run is closed, and `signals.run_finished` sent.
  Nothing here knows what listens.
"""
from __future__ import annotations

import redis

from ch03_signals.keys import LoopKeys
from ch03_signals.loop import Segment
from ch04_rate_limits.keys import for_day
from ch04_rate_limits.loop import LeasedLoop

from . import budget, runs, signals


class ReportingLoop(LeasedLoop):
    """A leased loop whose work belongs to runs: one budget per run, `run_finished` at a run's end."""

    def begin(self, r: redis.Redis, k: LoopKeys, options: dict) -> None:
        """Chapter 3's bookkeeping, in the day's open run (opened with the kick's budget if none is)."""
        options = dict(options)
        run = runs.open(r, k.day, options.pop("budget", None))
        super().begin(r, k, {**options, "run": run})

    def spent(self, r: redis.Redis, day: str) -> bool:
        """Whether the day's open run can pay for no more calls."""
        return budget.exhausted(r, runs.current(r, day))

    def takes_work(self, r: redis.Redis, day: str, segment: Segment) -> bool:
        return segment is not self.fetch or not self.spent(r, day)

    def lease(self, r: redis.Redis, day: str, task_id: str) -> list[str]:
        """No batch once the budget is spent: a helper chain then ends, the lead moves on."""
        return [] if self.spent(r, day) else super().lease(r, day, task_id)

    def end(self, r: redis.Redis, k: LoopKeys, owner: str, why: str) -> str:
        """Chapter 3's end; a loop that ended (not one that found a kick and goes on) ends its run."""
        ended = super().end(r, k, owner, why)
        if ended in ("finished", "stopped"):
            # exercise 5.1: close the day's run with its outcome ("stopped" for the stop switch, "budget spent" when the budget is exhausted and stations are still pending, else "finished") and, if this call closed it, send signals.run_finished with this loop as sender and the run, day and outcome
            raise NotImplementedError('exercise 5.1: close the day\'s run with its outcome ("stopped" for the stop switch, "budget spent" when the budget is exhausted and stations are still pending, else "finished") and, if this call closed it, send signals.run_finished with this loop as sender and the run, day and outcome')
        return ended

    def outcome_of(self, r: redis.Redis, day: str, ended: str) -> str:
        if ended == "stopped":
            return "stopped"
        if self.spent(r, day) and (r.zcard(for_day(day).pending) or r.zcard(for_day(day).in_flight)):
            return "budget spent"
        return "finished"
