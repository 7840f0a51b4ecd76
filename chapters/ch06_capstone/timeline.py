# Exercise copy of solutions/ch06_capstone/timeline.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Stations done over time, sampled from the outside: a thread counts what a pipeline has stored."""
from __future__ import annotations

import threading
import time
from typing import Callable


class Timeline:
    """Samples `count()` every `every` seconds while in its `with` block: [(time.time(), count), ...].

    A failed count (Redis restarting, a database being written) is skipped, not fatal: the line has a gap."""

    def __init__(self, count: Callable[[], int], every: float = 0.2):
        self._count, self.every = count, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timeline", daemon=True)

    def _sample(self) -> None:
        try:
            self.samples.append((time.time(), self._count()))
        except Exception:   # noqa: BLE001 - a sample lost, the run goes on
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> "Timeline":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def since(self, start: float | None, seconds: float | None = None) -> list[tuple[float, int]]:
        """The samples as (seconds after `start`, count), those before `start` left out; with `seconds` (the
        run's length) those after it too, ending on the last count at `seconds`."""
        if start is None:
            return []
        line = [(round(t - start, 3), n) for t, n in self.samples if t >= start]
        if seconds is None or not line:
            return line
        return [(t, n) for t, n in line if t < seconds] + [(round(seconds, 3), self.samples[-1][1])]
