"""Chapter 4's leased loop, with runs: a budget it spends from, and a signal when a run ends.

Four changes, each in one of chapter 3's and 4's hooks:

- `start` and `begin` (a loop starts): a kick opens the day's run with its budget
  unless one is open; any other start (the watchdog's) goes on in the open run, or
  does nothing when none is open: only a kick opens a run, so a run that ended
  "budget spent" is never followed by one nobody gave a budget. The run's id travels
  to every fetch as an option.
- `takes_work` and `lease` (what is work): once the run's budget is exhausted,
  fetch takes no more batches; transform and persist go on with what was fetched.
  The loop then ends as chapter 3's does, with the unfetched stations still pending.
- `end_lua` (the loop ended): the run is closed in the same script that ends the
  loop, with its outcome, so no kick can land between the end and the close.
- `end` (after that script): `signals.run_finished` is sent. Nothing here knows what listens.
"""
from __future__ import annotations

import redis

from ch03_signals.keys import LoopKeys
from ch03_signals.loop import Segment
from ch04_rate_limits.keys import for_day
from ch04_rate_limits.loop import LeasedLoop

from . import budget, runs, signals
from .keys import RunKeys, open_run, unreported

NO_RUN = ""   # the end's run argument when no run is open (a loop started before runs existed)


class NoOpenRun(Exception):
    """A start that is not a kick found no open run: it starts nothing."""


class ReportingLoop(LeasedLoop):
    """A leased loop whose work belongs to runs: one budget per run, `run_finished` at a run's end."""

    def start(self, r: redis.Redis, day=None, **options) -> str | None:
        """Chapter 4's start. A kick brings a `budget` (None: no limit) and opens a run if none is open;
        a start without one (the watchdog's) goes on in the open run, and with none open starts nothing."""
        try:
            return super().start(r, day, **options)
        except NoOpenRun:
            return None

    def begin(self, r: redis.Redis, k: LoopKeys, options: dict) -> None:
        """Chapter 3's bookkeeping, in the day's open run; a kick opens it (holding the lock: one opener)."""
        options = dict(options)
        if "budget" in options:
            run = runs.open(r, k.day, options.pop("budget"))
        else:
            run = runs.current(r, k.day)
        if run is None:
            r.delete(k.lock)   # ours, taken a moment ago by start: nothing to do without a run
            raise NoOpenRun(k.day)
        super().begin(r, k, {**options, "run": run})

    def spent(self, r: redis.Redis, day: str) -> bool:
        """Whether the day's open run can pay for no more calls."""
        return budget.exhausted(r, runs.current(r, day))

    def takes_work(self, r: redis.Redis, day: str, segment: Segment) -> bool:
        """Work belongs to a run: none without an open run (for the watchdog, a day waiting for a kick);
        fetch none once its budget is spent."""
        run = runs.current(r, day)
        return run is not None and (segment is not self.fetch or not budget.exhausted(r, run))

    def unwatch(self, r: redis.Redis, day: str) -> None:
        """Chapter 3's, and the repair of a run left open by a loop that died with no work left (the
        watchdog finds the day idle): closed unless a loop holds the lock, and announced."""
        super().unwatch(r, day)
        spent = self.spent(r, day) and (r.zcard(for_day(day).pending) or r.zcard(for_day(day).in_flight))
        outcome = "budget spent" if spent else "finished"
        run = runs.close(r, day, outcome, lock=self.keys(day).lock)
        if run is not None:
            signals.run_finished.send(sender=self, run=run, day=day, outcome=outcome)

    def may_lease(self, r: redis.Redis, day: str) -> bool:
        """No batch once the budget is spent: a helper chain then ends, the lead moves on."""
        return not self.spent(r, day)

    # ---------------------------------------------------------------- the end closes the run

    def end_lua(self) -> str:
        """In the end's script: the outcome ("stopped", "budget spent" when the budget is exhausted and stations
        are still pending or in flight, else "finished") and the close of the run (runs.close_lua)."""
        return """
local outcome = ended
if ended == 'finished' and redis.call('HGET', KEYS[5], 'exhausted') == '1'
    and (redis.call('ZCARD', KEYS[7]) > 0 or redis.call('ZCARD', KEYS[8]) > 0) then
  outcome = 'budget spent'
end
local closed = false""" + runs.close_lua("KEYS[4]", "KEYS[5]", "KEYS[6]", "ARGV[4]", "outcome", "ARGV[2]")

    def end(self, r: redis.Redis, k: LoopKeys, owner: str, why: str, *_) -> str:
        """Chapter 3's end, which closes the run in its script if the loop ended; then `run_finished`, once."""
        run = runs.current(r, k.day)   # the lock is ours: nobody else closes the open run meanwhile
        mine = for_day(k.day)
        ended = super().end(r, k, owner, why,
                            more_keys=(open_run(k.day), RunKeys(run).record if run else f"{open_run(k.day)}:none",
                                       unreported(k.day), mine.pending, mine.in_flight),
                            more_args=(run or NO_RUN,))
        if ended in ("finished", "stopped") and run is not None:
            # >>> exercise 5.1, part 2 of 3: the end's script closed `run` and wrote its outcome in the run's record: send signals.run_finished, once, with this loop as sender and the run, the day and that outcome
            outcome = r.hget(RunKeys(run).record, "outcome")
            signals.run_finished.send(sender=self, run=run, day=k.day, outcome=outcome)
            # <<<
        return ended
