"""Every Redis key the segments use, in one place, all prefixed with the run's day.

A station moves through four stages, one segment at a time; each stage is a
Redis sorted set with every score 0, a set kept in id order (see stages.py):

    stations (every station discovered: the run's universe)
    pending  --fetch-->  fetched  --transform-->  transformed  --persist-->  persisted

A segment's input is a stage and its output the next stage, so what is left to do is
always visible in Redis, and a segment that dies leaves its ids where they were.
Only ids and small records live here; raw readings get a TTL.

The day is a hash tag (`pipeline:{2026-01-15}:pending`): on a Redis Cluster every
key of one day lies in one slot, so later chapters' scripts may touch several of them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from workshop import settings as settings_mod

PREFIX = "pipeline"
RAW_TTL = 24 * 3600   # raw readings are only needed until transform has run
SEGMENTS = ("discover", "fetch", "transform", "persist")


def day_of(day: dt.date | str | None = None) -> str:
    """The run's day as YYYY-MM-DD; by default the day in the settings (read now, not at import)."""
    if day is None:
        day = settings_mod.load().day
    return day if isinstance(day, str) else day.isoformat()


@dataclass(frozen=True)
class Keys:
    day: str

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.day}}}"

    @property
    def stations(self) -> str:      # stage: every station discover found
        return f"{self.base}:stations"

    @property
    def pending(self) -> str:       # stage: to fetch
        return f"{self.base}:pending"

    @property
    def fetched(self) -> str:       # stage: raw readings stored, to transform
        return f"{self.base}:fetched"

    @property
    def transformed(self) -> str:   # stage: summary stored, to persist
        return f"{self.base}:transformed"

    @property
    def persisted(self) -> str:     # stage: in SQLite
        return f"{self.base}:persisted"

    @property
    def fetch_errors(self) -> str:  # hash: station -> why its last fetch failed (gone once fetched)
        return f"{self.base}:fetch:errors"

    @property
    def summaries(self) -> str:     # hash: station -> daily summary (JSON)
        return f"{self.base}:summaries"

    def raw(self, station: str) -> str:   # string: the station's 24 readings (JSON), with RAW_TTL
        return f"{self.base}:raw:{station}"

    @property
    def pattern(self) -> str:
        """Matches every data key of this day (not the progress counters)."""
        return f"{self.base}:*"

    def progress(self, segment: str) -> str:
        """workshop.progress counters of the segment's latest run; outside `pattern` on purpose:
        counters describe a run, they are not the pipeline's state."""
        return f"progress:{PREFIX}:{self.day}:{segment}"


def for_day(day: dt.date | str | None = None) -> Keys:
    return Keys(day_of(day))
