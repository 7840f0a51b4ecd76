# Exercise copy of solutions/ch03_signals/progress_report.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""What a loop tells whoever watches it: is it running, has it finished, how far is it.

`running` and `finished` answer the two questions everyone asks. `report`
writes `workshop.progress` counters per segment (the stations past it, out of
every discovered station), which progress bars read: `advance` calls it at most
every REPORT_EVERY seconds per process (`report_due`), and `end` once more when
the loop ends. `status` is one dict for a person; `wait` blocks until the loop
finished, drawing one progress bar per segment if asked.

`ProgressReport` is a mixin of `Loop` (loop.py); it uses the loop's `keys` and
`segments`. Chapter 4 overrides `report` (leased stations still wait, dead
letters failed) and extends `status`.
"""
from __future__ import annotations

import time
from functools import cached_property
from typing import Callable

import redis

from ch02_segmented import stages
from workshop import progress

from . import keys, lock

REPORT_EVERY = 0.25       # seconds: a process writes the progress counters at most this often (and at the end)


class ProgressReport:
    """Running or finished, progress counters for the bars, `status` for a person, `wait` for a notebook."""

    @cached_property
    def _reported(self) -> dict[str, float]:
        """day -> when this process last wrote its progress."""
        return {}

    def report_due(self, day: str) -> bool:
        """Whether this turn writes the progress counters: at most every REPORT_EVERY s per process, as
        progress bars read them (two round trips a turn would be a fifth of what a turn costs Redis)."""
        now = time.monotonic()
        if now - self._reported.get(day, -REPORT_EVERY) < REPORT_EVERY:
            return False
        self._reported[day] = now
        return True

    def report(self, r: redis.Redis, k: keys.LoopKeys) -> None:
        """Progress counters per segment: the stations past it, out of every discovered station."""
        sets = k.segments
        with r.pipeline(transaction=False) as p:
            p.zcard(sets.stations)
            for segment in self.segments:
                p.zcard(getattr(sets, segment.source))
            total, *waiting = p.execute()
        with r.pipeline(transaction=False) as p:
            for i, segment in enumerate(self.segments):
                p.hset(k.progress(segment.name), mapping={"total": total, "failed": 0,
                                                          "done": max(0, total - sum(waiting[:i + 1]))})
            p.execute()

    def running(self, r: redis.Redis, day=None) -> str | None:
        """The running loop's owner token, or None."""
        return lock.owner(r, self.keys(day).lock)

    def finished(self, r: redis.Redis, day=None) -> bool:
        k = self.keys(day)
        return bool(r.exists(k.finished)) and not r.exists(k.lock)

    def status(self, r: redis.Redis, day=None) -> dict:
        k = self.keys(day)
        sets = k.segments
        return {"owner": r.get(k.lock), "lock_ttl_ms": max(r.pttl(k.lock), 0),
                "stop_switch": r.get(k.stop),
                "finished": self.finished(r, k.day), "restarts": int(r.get(k.restarts) or 0),
                "chains": {chain: int(n) for chain, n in r.hgetall(k.turns).items() if ":" not in chain},
                "set_aside": r.hlen(k.poison),
                "work": {s.name: stages.count(r, getattr(sets, s.source)) for s in self.segments}}

    def wait(self, r: redis.Redis, day=None, timeout: float = 120.0, show: bool = False,
             until: Callable[[], bool] | None = None) -> bool:
        """Wait until the loop finished (True), or `until()` is true or `timeout` passed (False).

        show=True draws one progress bar per segment meanwhile.
        """
        k = self.keys(day)
        deadline = time.monotonic() + timeout
        over = (lambda: self.finished(r, k.day) or (until is not None and until()))
        if show:
            for segment in self.segments:
                progress.follow(r, k.progress(segment.name), desc=segment.name,
                                timeout=max(0.0, deadline - time.monotonic()), until=over)
        while not self.finished(r, k.day):
            if (until is not None and until()) or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
