# Exercise copy of solutions/ch05_reporting/runs.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""A run's identity and what the pipeline records about it, in Redis.

`open` gives the day's open run, opening one (with its budget) if none is: a
loop the watchdog restarts, or kicked again, goes on in the same run. `close`
ends it in one script, and puts it in the set of runs waiting for a report,
*before* the `run_finished` signal is sent: a worker killed in between leaves
the run there, and the report still comes (reporting.py sweeps the set).

`count_call` is how the pipeline records each API call of a run: counters for
the run's figures, and a stream entry per call for the report's timelines.
"""
from __future__ import annotations

import time

import redis

from . import budget as budget_mod
from .keys import UNREPORTED, RunKeys, open_run, sequence

CALLS_KEPT = 100_000   # stream entries per run (a day of 2,000 stations at batch 50 is about 40 calls)

# KEYS: open run, sequence. ARGV: day, budget (micro, -1: none), now. Returns the open run's id.
_OPEN = """
local open = redis.call('GET', KEYS[1])
if open then return open end
local run = ARGV[1] .. '.' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], run)
redis.call('HSET', 'run:{' .. run .. '}', 'day', ARGV[1], 'started', ARGV[3], 'budget_micro', ARGV[2],
           'spent_micro', 0)
return run
"""

# KEYS: open run, unreported. ARGV: outcome, now. Returns the run closed, or false when none was open.
_CLOSE = """
local run = redis.call('GET', KEYS[1])
if not run then return false end
redis.call('DEL', KEYS[1])
redis.call('HSET', 'run:{' .. run .. '}', 'ended', ARGV[2], 'outcome', ARGV[1])
redis.call('SADD', KEYS[2], run)
return run
"""


def open(r: redis.Redis, day: str, budget_micro: int | None = None) -> str:
    """The day's open run, or a new one with this budget (micro; None: no budget)."""
    budget = budget_mod.UNLIMITED if budget_micro is None else int(budget_micro)
    return r.register_script(_OPEN)(keys=[open_run(day), sequence(day)], args=[day, budget, time.time()])


def current(r: redis.Redis, day: str) -> str | None:
    return r.get(open_run(day))


def close(r: redis.Redis, day: str, outcome: str) -> str | None:
    """End the day's open run with `outcome`; the run, or None if none was open (closed already)."""
    return r.register_script(_CLOSE)(keys=[open_run(day), UNREPORTED], args=[outcome, time.time()]) or None


def count_call(r: redis.Redis, run: str, batch: list[str], status: int | None, billed: int,
               seconds: float) -> None:
    """One API call of the run: its status (None: no answer), what it cost (micro, as the terms bill it
    or, without an answer, as reserved), and whether it asked again for stations this run asked for."""
    k = RunKeys(run)
    new = r.sadd(k.asked, *batch)
    retry = int(new < len(batch))
    fetched = len(batch) if status == 200 else 0
    with r.pipeline(transaction=False) as p:
        p.hincrby(k.counters, "requests", 1)
        p.hincrby(k.counters, f"status:{status or 'none'}", 1)
        p.hincrby(k.counters, "retries", retry)
        p.hincrby(k.counters, "stations_fetched", fetched)
        p.hincrby(k.counters, "cost_micro", billed)
        p.xadd(k.calls, {"at": time.time(), "status": status or 0, "stations": len(batch), "fetched": fetched,
                         "cost_micro": billed, "retry": retry, "seconds": round(seconds, 3)},
               maxlen=CALLS_KEPT, approximate=True)
        p.execute()


def record(r: redis.Redis, run: str) -> dict:
    """What Redis holds about the run: its record, counters and calls."""
    k = RunKeys(run)
    info = r.hgetall(k.record)
    counters = {name: int(value) for name, value in r.hgetall(k.counters).items()}
    calls = [{name: float(value) for name, value in fields.items()} for _, fields in r.xrange(k.calls)]
    return {"run": run, **info, "counters": counters, "calls": calls}


def forget(r: redis.Redis, run: str) -> None:
    r.delete(*RunKeys(run).all())
    r.srem(UNREPORTED, run)
