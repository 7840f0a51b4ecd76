# Exercise copy of solutions/ch05_reporting/runs.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""A run's life and what the pipeline records about it, in Redis.

    kick ──> open (with its budget) ──> loop turns ... ──> the loop's end closes it ──> unreported ──> report
                     a watchdog restart, a later kick: the same run ─┘        (one script: loop.py)

Only a kick opens a run, and only while it holds the loop's lock (`ReportingLoop.begin`):
a watchdog restart or any other start goes on in the open run, or does nothing. The
loop's end closes the run in the same script that ends the loop (`close_lua` is the
piece it runs), so no kick can land between the two; the watchdog closes the open run
of a day left with no lock and no work (`close`). A closed run waits in its day's
`unreported` set for its report, *before* the `run_finished` signal is sent: a worker
killed in between leaves it there, and the report still comes (reporting.py sweeps).

Every API call is on record from its reservation (budget.py): a call whose worker died
after the API answered is in the run's figures as "answer lost", at what it reserved,
so what the run recorded is never below what the API billed.

Safe twice: `open` gives the open run on a repeat; `close` and the loop's end keep their
first answer (workshop.lua.once); a call is reserved and settled once by its id.
"""
from __future__ import annotations

import time
import uuid

import redis

from workshop.lua import Script, once

from . import budget as budget_mod
from .keys import DAYS, RunKeys, day_of_run, open_run, sequence, unreported

CALLS_KEPT = 100_000   # stream entries per run (a day of 2,000 stations at batch 50 is about 40 calls)

# KEYS: open run, sequence, the new run's record. ARGV: run, its number, day, budget (micro, -1: none), now.
# Returns the open run's id: the one already open (a repeat of this call finds its own), or this one.
_OPEN = Script("""
local open = redis.call('GET', KEYS[1])
if open then return open end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'day', ARGV[3], 'started', ARGV[5], 'budget_micro', ARGV[4], 'spent_micro', 0)
return ARGV[1]
""")


def close_lua(open_key: str, record: str, unreported_key: str, run: str, outcome: str, now: str) -> str:
    """Lua that closes `run` if it is the day's open run, and sets `closed` to true; its arguments are Lua
    expressions (KEYS[5], ARGV[4], a local). The loop's end runs it inside its own script."""
    return f"""
if {run} ~= '' and redis.call('GET', {open_key}) == {run} then
  redis.call('DEL', {open_key})
  redis.call('HSET', {record}, 'ended', {now}, 'outcome', {outcome})
  redis.call('SADD', {unreported_key}, {run})
  closed = true
end"""


# KEYS: open run, its record, the day's unreported runs, the loop's lock, the call's answer. ARGV: run,
# outcome, now. Nothing while the lock lives (a loop runs: its own end closes the run).
_CLOSE = Script(once("""
if redis.call('EXISTS', KEYS[4]) == 1 then return false end
local closed = false""" + close_lua("KEYS[1]", "KEYS[2]", "KEYS[3]", "ARGV[1]", "ARGV[2]", "ARGV[3]") + """
if closed then return ARGV[1] end
return false"""))


def open(r: redis.Redis, day: str, budget_micro: int | None = None) -> str:
    """The day's open run, or a new one with this budget (micro; None: no budget).

    Called by a kick holding the loop's lock, so one opener at a time: the number is read,
    then written with the run in one script (which answers the open run to a repeat)."""
    r.sadd(DAYS, day)   # where the report sweep looks; idempotent, before the run exists
    found = current(r, day)
    if found is not None:
        return found
    number = int(r.get(sequence(day)) or 0) + 1
    run = f"{day}.{number}"
    budget = budget_mod.UNLIMITED if budget_micro is None else int(budget_micro)
    return _OPEN(r, keys=[open_run(day), sequence(day), RunKeys(run).record],
                 args=[run, number, day, budget, time.time()])


def current(r: redis.Redis, day: str) -> str | None:
    return r.get(open_run(day))


def close(r: redis.Redis, day: str, outcome: str, lock: str, call: str | None = None) -> str | None:
    """Close the day's open run with `outcome` unless the loop's `lock` is held (a running loop closes its
    own run as it ends); the run closed, or None. The watchdog's repair for a day with no lock and no work."""
    run = current(r, day)
    if run is None:
        return None
    answer = f"runs:{{{day}}}:closed:{call or uuid.uuid4().hex}"   # this call's (workshop.lua.once)
    return _CLOSE(r, keys=[open_run(day), RunKeys(run).record, unreported(day), lock, answer],
                  args=[run, outcome, time.time()]) or None


def unreported_runs(r: redis.Redis) -> list[str]:
    """Every run that ended and has no report yet, of every day that had a run."""
    days = sorted(r.smembers(DAYS))
    if not days:
        return []
    with r.pipeline(transaction=False) as p:
        for day in days:
            p.smembers(unreported(day))
        return sorted(run for runs in p.execute() for run in runs)


def reported(r: redis.Redis, run: str) -> None:
    r.srem(unreported(day_of_run(run)), run)


def is_unreported(r: redis.Redis, run: str) -> bool:
    return bool(r.sismember(unreported(day_of_run(run)), run))


def record(r: redis.Redis, run: str) -> dict:
    """What Redis holds about the run: its record, counters and calls."""
    k = RunKeys(run)
    info = r.hgetall(k.record)
    counters = {name: int(value) for name, value in r.hgetall(k.counters).items()}
    calls = [{name: float(value) for name, value in fields.items()} for _, fields in r.xrange(k.calls)]
    return {"run": run, **info, "counters": counters, "calls": calls}


def forget(r: redis.Redis, run: str) -> None:
    r.delete(*RunKeys(run).all())
    reported(r, run)
