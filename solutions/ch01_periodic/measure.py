"""Figures that say how a pipeline did, from what the API saw and what was stored.

Nothing here knows how the pipeline works: it reads the API's own counts
(`stats()`, or GET /_stats) and a {station: summary} mapping, and compares them
with the answer key. Chapter 6 measures the looped pipeline with the same code.

- duplicates: fetches beyond the first per station, i.e. calls paid for twice;
- utilisation: accepted requests per second ÷ the rate the API allows;
- missing / wrong: expected stations with no stored summary / one that differs
  from the answer key.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from workshop import stations as answer_key


def duplicates(stats: dict) -> int:
    """Fetches beyond the first, summed over stations: the calls paid for twice (or more)."""
    return sum(n - 1 for n in stats["fetches"].values() if n > 1)


def fetched_more_than_once(stats: dict) -> list[str]:
    return sorted(station for station, n in stats["fetches"].items() if n > 1)


def wall_seconds(stats: dict) -> float:
    """Seconds from the API's first request to its last one."""
    if stats["first_request_at"] is None:
        return 0.0
    return stats["last_request_at"] - stats["first_request_at"]


def utilisation(stats: dict, seconds: float | None = None) -> float:
    """Accepted requests per second over `seconds` (default: first to last request), ÷ the API's rate.

    1.0 means every request the API would have taken was used; 0.2 means 80% of
    the budget went unused. A burst can push it a little above 1 over a short run.
    """
    # >>> exercise 1.3: the share of the API's rate (stats["config"]["rate"], requests/s) that accepted requests used over `seconds` (default: wall_seconds(stats)); 0.0 when no time passed
    if seconds is None:
        seconds = wall_seconds(stats)
    if seconds <= 0:
        return 0.0
    return stats["accepted"] / seconds / stats["config"]["rate"]
    # <<<


def check(summaries: dict[str, dict], expected: Iterable[str], day: str, seed: int,
          glitch_rate: float = 0.0, kinds: tuple[str, ...] = answer_key.DEFAULT_GLITCH_KINDS) -> dict[str, list[str]]:
    """Sort the expected stations into done (equal to the answer key), wrong, and missing (no summary)."""
    verdicts: dict[str, list[str]] = {"done": [], "wrong": [], "missing": []}
    for station in expected:
        summary = summaries.get(station)
        if summary is None:
            verdicts["missing"].append(station)
        elif answer_key.same_summary(summary, answer_key.expected_summary(station, day, seed, glitch_rate, kinds)):
            verdicts["done"].append(station)
        else:
            verdicts["wrong"].append(station)
    return verdicts


def figures(stats: dict, summaries: dict[str, dict], expected: Iterable[str], day: str,
            seconds: float | None = None) -> dict:
    """One row of figures for a run: completeness against the answer key, and what the API saw.

    Seed and glitch rate come from the API's config, so the answer key matches what it served.
    """
    config = stats["config"]
    expected = list(expected)
    verdicts = check(summaries, expected, day, config["seed"], config["glitch_rate"],
                     tuple(config.get("glitch_kinds", answer_key.DEFAULT_GLITCH_KINDS)))
    seconds = wall_seconds(stats) if seconds is None else seconds
    return {
        "stations": len(expected),
        "done": len(verdicts["done"]),
        "missing": len(verdicts["missing"]),
        "wrong": len(verdicts["wrong"]),
        "duplicates": duplicates(stats),
        "requests": stats["requests"],
        "accepted": stats["accepted"],
        "429s": stats["rate_limited"],
        "errors": stats["faults"]["error"],
        "seconds": round(seconds, 2),
        "utilisation": round(utilisation(stats, seconds), 3),
    }


class RateSampler:
    """Samples the API's counters every `every` seconds in a thread, for a requests-per-second plot.

        with RateSampler(api.stats) as sampler:
            ...run the pipeline...
        sampler.per_second()   # [(t, accepted/s, 429s/s), ...]
    """

    def __init__(self, stats: Callable[[], dict], every: float = 0.5):
        self._stats, self.every = stats, every
        self.samples: list[tuple[float, int, int]] = []   # (time.time(), accepted, rate_limited)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rate-sampler", daemon=True)

    def _sample(self) -> None:
        s = self._stats()
        self.samples.append((time.time(), s["accepted"], s["rate_limited"]))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def start(self) -> "RateSampler":
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def per_second(self) -> list[tuple[float, float, float]]:
        """(seconds since the first sample, accepted per second, 429s per second) for each interval."""
        t0 = self.samples[0][0] if self.samples else 0.0
        rows = []
        for (t1, a1, l1), (t2, a2, l2) in zip(self.samples, self.samples[1:]):
            if t2 > t1:
                rows.append((t2 - t0, (a2 - a1) / (t2 - t1), (l2 - l1) / (t2 - t1)))
        return rows

    def __enter__(self) -> "RateSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
