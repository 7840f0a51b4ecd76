"""Where chapter 4 keeps its state in Redis.

Two kinds of keys:

- **The API's keys**, shared by every pipeline, worker and host that calls the
  same API: the limiter's state, the limit it enforces, the loop-wide pause,
  a log of pauses and the circuit breaker. They are named after the API, not after a day, and wrapped in
  a hash tag (`{stations-api}`) so that, on a Redis Cluster, the scripts that
  touch several of them find them on one node.
- **The day's keys**: chapter 2's (pending, fetched, ...) plus what this chapter
  adds to a station's journey: a lease while it is in flight (a deadline and the
  token of its holder), an attempt counter and the cause of the last failed
  attempt, and the dead-letter hash. They carry the day as a hash tag
  (`pipeline:{2026-01-15}:inflight`), like chapter 2's and the loop's: every script
  that moves a station touches keys of one day only, so of one slot.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ch02_segmented import keys as segment_keys

API = "stations-api"   # one limit per API (per API key): every worker shares it


@dataclass(frozen=True)
class ApiKeys:
    """The keys of one API's limit, shared by everything that calls it."""

    name: str = API

    @property
    def base(self) -> str:
        return f"ratelimit:{{{self.name}}}"

    @property
    def state(self) -> str:    # string: the limiter's theoretical arrival time (GCRA), ms on Redis's clock
        return f"{self.base}:tat"

    @property
    def limit(self) -> str:    # hash: rate, burst (what the limiter enforces), api_rate, api_burst (published)
        return f"{self.base}:limit"

    @property
    def published(self) -> str:  # hash: rate, burst the API published when `configure_published` last set the limit
        return f"{self.base}:published"

    @property
    def pause(self) -> str:    # string: paused until (ms on Redis's clock), expiring when the pause ends
        return f"{self.base}:pause"

    @property
    def pauses(self) -> str:   # list: one JSON record per 429 that paused the loop (newest last, capped)
        return f"{self.base}:pauses"

    @property
    def counters(self) -> str:  # hash: granted, waited_ms, rate_limited, ... (what the limiter saw)
        return f"{self.base}:counters"

    @property
    def circuit(self) -> str:  # hash: the circuit breaker (circuit.py): state, kind, failures, next probe, ...
        return f"{self.base}:circuit"

    def circuit_call(self, call_id: str) -> str:   # string: this call's answer, recorded (expires)
        return f"{self.base}:circuit:call:{call_id}"

    def all(self) -> list[str]:
        return [self.state, self.limit, self.published, self.pause, self.pauses, self.counters, self.circuit]


@dataclass(frozen=True)
class Keys(segment_keys.Keys):
    """Chapter 2's keys of a day, plus chapter 4's."""

    @property
    def in_flight(self) -> str:      # sorted set: station -> lease deadline (ms on Redis's clock)
        return f"{self.base}:inflight"

    @property
    def holders(self) -> str:        # hash: station -> lease token of the message that holds it
        return f"{self.base}:holders"

    @property
    def attempts(self) -> str:       # hash: station -> deliveries of a fetch that did not settle it
        return f"{self.base}:attempts"

    @property
    def causes(self) -> str:         # hash: station -> JSON {reason, detail} of its last unsettled delivery
        return f"{self.base}:causes"

    def delivery(self, delivery_id: str) -> str:   # string: this delivery was counted (expires)
        return f"{self.base}:delivery:{delivery_id}"

    @property
    def dead_letters(self) -> str:   # hash: station -> JSON {reason, detail, attempts, at}
        return f"{self.base}:dead"


def for_day(day: dt.date | str | None = None) -> Keys:
    return Keys(segment_keys.day_of(day))
