"""Where a loop keeps its state in Redis, next to chapter 2's sets (which it only reads and moves).

Per loop name ("ch03") and day:
    <loop>:{<day>}:lock       string: the owner token of the running loop, with a TTL (see lock.py)
    <loop>:{<day>}:turns      hash: chain -> its turn number, <chain>:task -> the task id of its turn
    <loop>:{<day>}:kicked     string: a kick came while the loop ran: look for work again before ending
    <loop>:{<day>}:stop       string: present = stop after the batch in flight
    <loop>:{<day>}:options    hash: options the loop passes on to its tasks (e.g. persist's db)
    <loop>:{<day>}:finished   string: when the loop last ran out of work (epoch seconds)
    <loop>:{<day>}:restarts   int: how often the watchdog restarted a dead loop
    <loop>:{<day>}:failures   hash: <segment>:<station> -> failed batches it was in, since its last success
    <loop>:{<day>}:poison     hash: station -> why it was set aside (chapter 3; chapter 4 dead-letters it)
    <loop>:loops              set: days whose loop has work; the watchdog looks after these
    progress:<loop>:<day>:<segment>   workshop.progress counters, one bar per segment

The day is a hash tag, as in chapter 2's keys: on a Redis Cluster a day's loop keys
and its sets share one slot, so one script (or MULTI) may touch both. `<loop>:loops` spans
days: no script or transaction touches it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ch02_segmented import keys as segment_keys


@dataclass(frozen=True)
class LoopKeys:
    loop: str
    day: str

    @property
    def base(self) -> str:
        return f"{self.loop}:{{{self.day}}}"

    @property
    def lock(self) -> str:
        return f"{self.base}:lock"

    @property
    def turns(self) -> str:
        return f"{self.base}:turns"

    @property
    def kicked(self) -> str:
        return f"{self.base}:kicked"

    @property
    def failures(self) -> str:
        return f"{self.base}:failures"

    @property
    def poison(self) -> str:
        return f"{self.base}:poison"

    @property
    def stop(self) -> str:
        return f"{self.base}:stop"

    @property
    def options(self) -> str:
        return f"{self.base}:options"

    @property
    def finished(self) -> str:
        return f"{self.base}:finished"

    @property
    def restarts(self) -> str:
        return f"{self.base}:restarts"

    def progress(self, segment: str) -> str:
        return f"progress:{self.loop}:{self.day}:{segment}"

    @property
    def segments(self) -> segment_keys.Keys:
        """Chapter 2's keys of the same day: the sets the loop takes its batches from."""
        return segment_keys.Keys(self.day)


def for_day(loop: str, day: dt.date | str | None = None) -> LoopKeys:
    return LoopKeys(loop, segment_keys.day_of(day))


def watched(loop: str) -> str:
    """The set of days whose loop has work: the watchdog's list."""
    return f"{loop}:loops"
