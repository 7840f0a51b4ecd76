"""Where chapter 1 keeps its state in Redis: a handful of keys per day."""
from __future__ import annotations

PREFIX = "ch01"

# The day's keys, by name:
#   stations   list: the day's station ids, in listing order (written once, by the first run)
#   cursor     int: index in that list of the next station a run will take
#   summaries  hash: station -> daily summary (JSON)
#   progress   hash: total, done, failed (workshop.progress draws a bar from it)
#   runs       list: one JSON record per run: when, which slice, how it ended
#   running    int: runs working right now
NAMES = ("stations", "cursor", "summaries", "progress", "runs", "running")


def key(day: str, name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no chapter 1 key named {name!r}; use one of {', '.join(NAMES)}")
    return f"{PREFIX}:{day}:{name}"


def all_keys(day: str) -> list[str]:
    return [key(day, name) for name in NAMES]
