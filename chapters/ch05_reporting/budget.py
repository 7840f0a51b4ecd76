# Exercise copy of solutions/ch05_reporting/budget.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""One budget per run, shared by every worker: reserve before each call, settle after.

Before a call, `reserve` takes the most that call can be billed (prices.call) from
the run's budget in one Redis script: check and spend are one step, so two workers
can never both take the last of it. After the answer, `refund` gives back what the
API's terms did not bill (a 429 or a 5xx under "2xx" billing). A call without an
answer (a timeout) keeps its reservation: the API may have billed it.

When a reservation does not fit, the budget is *exhausted* (a flag in the run's
record) and stays so: the loop fetches no more in this run (loop.py), and goes on
with what was fetched. A refund after that does not reopen it, so a run's end is final.
"""
from __future__ import annotations

import redis

from .keys import RunKeys

UNLIMITED = -1

# KEYS: the run's record (hash). ARGV: the amount (micro).
_PROLOGUE = """
local budget = tonumber(redis.call('HGET', KEYS[1], 'budget_micro') or '-1')
local amount = tonumber(ARGV[1])
"""


def reserve_core() -> str:
    """The check-and-spend, in Lua: with `budget` (micro, -1: none) and `amount` known, the spent total
    after taking `amount`, or -1 when it does not fit."""
    # exercise 5.2: return the Lua that spends `amount` only if it still fits in `budget` (-1: no limit) beside what the run spent (field spent_micro), answering the new spent total; if it does not fit, nothing is spent, the run is marked exhausted (field exhausted = 1) and the answer is -1; an exhausted run spends nothing more
    raise NotImplementedError("exercise 5.2: return the Lua that spends `amount` only if it still fits in `budget` (-1: no limit) beside what the run spent (field spent_micro), answering the new spent total; if it does not fit, nothing is spent, the run is marked exhausted (field exhausted = 1) and the answer is -1; an exhausted run spends nothing more")


def reserve_script() -> str:
    return _PROLOGUE + reserve_core()


def reserve(r: redis.Redis, run: str, amount: int) -> bool:
    """Take `amount` (micro) from the run's budget for a call; False: it does not fit (now exhausted)."""
    return int(r.register_script(reserve_script())(keys=[RunKeys(run).record], args=[amount])) >= 0


def refund(r: redis.Redis, run: str, amount: int) -> None:
    """Give back what a call reserved and was not billed."""
    if amount:
        r.hincrby(RunKeys(run).record, "spent_micro", -amount)


def exhausted(r: redis.Redis, run: str | None) -> bool:
    return run is not None and r.hget(RunKeys(run).record, "exhausted") == "1"


def state(r: redis.Redis, run: str) -> dict:
    """{budget (micro, or None), spent (micro), exhausted}."""
    budget, spent, flag = r.hmget(RunKeys(run).record, "budget_micro", "spent_micro", "exhausted")
    budget = int(budget if budget is not None else UNLIMITED)
    return {"budget": None if budget == UNLIMITED else budget, "spent": int(spent or 0), "exhausted": flag == "1"}
