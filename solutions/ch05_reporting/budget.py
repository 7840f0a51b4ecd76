"""One budget per run, shared by every worker: reserve before each call, settle after, by the call's id.

Before a call, `reserve` takes the most that call can be billed (prices.call) from
the run's budget in one Redis script: check and spend are one step, so two workers
can never both take the last of it. After the answer, `settle` gives back what the
API's terms did not bill (a 429 or a 5xx under "2xx" billing) and counts the call in
the run's figures, in one script too. A call without an answer (a timeout) keeps its
reservation: the API may have billed it. So does a call whose worker died before it
settled: it is on record from its reservation ("answer lost"), at what it reserved,
so the run's recorded cost is never below the API's bill.

One call id from reservation to settlement: redis-py may send either script twice
(a reply lost to a stalled Redis), and a second run must change nothing. The run's
`reserved` hash remembers each call (what it reserved and its answer, then that it
settled): a repeated reservation answers what the first did, a repeated settlement
gives nothing back twice.

When a reservation does not fit, the budget is *exhausted* (a flag in the run's
record) and stays so: the loop fetches no more in this run (loop.py), and goes on
with what was fetched. A settlement after that does not reopen it, so a run's end is final.
"""
from __future__ import annotations

import time
import uuid

import redis

from workshop.lua import Script

from .keys import RunKeys

UNLIMITED = -1
CALLS_KEPT = 100_000   # stream entries per run (a day of 2,000 stations at batch 50 is about 40 calls)

# KEYS: the run's record (hash), its reserved calls (hash), its counters. ARGV: the amount (micro), the call id.
_PROLOGUE = """
local said = redis.call('HGET', KEYS[2], ARGV[2])
if said then return tonumber(string.match(said, ' (%S+)$')) end   -- this call, sent again: its first answer
local budget = tonumber(redis.call('HGET', KEYS[1], 'budget_micro') or '-1')
local amount = tonumber(ARGV[1])
local function reserve()
"""

# What the core answered is kept with the call; a call that fits is on record from now, at what it reserved.
_EPILOGUE = """
end
local answer = reserve()
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1] .. ' ' .. answer)
if answer >= 0 then
  redis.call('HINCRBY', KEYS[3], 'calls', 1)
  redis.call('HINCRBY', KEYS[3], 'cost_micro', amount)
end
return answer
"""


def reserve_core() -> str:
    """The check-and-spend, in Lua: with `budget` (micro, -1: none) and `amount` known, the spent total
    after taking `amount`, or -1 when it does not fit."""
    # >>> exercise 5.2: return the Lua that spends `amount` only if it still fits in `budget` (-1: no limit) beside what the run spent (field spent_micro), answering the new spent total; if it does not fit, nothing is spent, the run is marked exhausted (field exhausted = 1) and the answer is -1; an exhausted run spends nothing more
    return """
if redis.call('HGET', KEYS[1], 'exhausted') == '1' then return -1 end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent_micro') or '0')
if budget >= 0 and spent + amount > budget then
  redis.call('HSET', KEYS[1], 'exhausted', 1)
  return -1
end
return redis.call('HINCRBY', KEYS[1], 'spent_micro', amount)
"""
    # <<<


def reserve_script() -> str:
    return _PROLOGUE + reserve_core() + _EPILOGUE


# KEYS: the run's record, reserved calls, counters, calls (stream), asked (set). ARGV: call id, status ("" for
# no answer), billed (micro), seconds, now, then the batch's stations. 1: the call is settled (by this run of
# the script, or by an earlier one: a repeat changes nothing); 0: it was never reserved.
_SETTLE = Script(f"""
local said = redis.call('HGET', KEYS[2], ARGV[1])
if not said or tonumber(string.match(said, ' (%S+)$')) < 0 then return 0 end   -- never reserved, or refused
if string.sub(said, 1, 8) == 'settled ' then return 1 end   -- settled already (this call sent again): changes nothing
redis.call('HSET', KEYS[2], ARGV[1], 'settled ' .. said)
local back = tonumber(string.match(said, '^(%S+)')) - tonumber(ARGV[3])
if back ~= 0 then   -- what the terms did not bill comes back to the budget and off the recorded cost
  redis.call('HINCRBY', KEYS[1], 'spent_micro', -back)
  redis.call('HINCRBY', KEYS[3], 'cost_micro', -back)
end
local new = 0
for i = 6, #ARGV do new = new + redis.call('SADD', KEYS[5], ARGV[i]) end
local retry = (new < #ARGV - 5) and 1 or 0
local fetched = (ARGV[2] == '200') and (#ARGV - 5) or 0
local status = (ARGV[2] == '') and 'none' or ARGV[2]
redis.call('HINCRBY', KEYS[3], 'requests', 1)
redis.call('HINCRBY', KEYS[3], 'status:' .. status, 1)
redis.call('HINCRBY', KEYS[3], 'retries', retry)
redis.call('HINCRBY', KEYS[3], 'stations_fetched', fetched)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', {CALLS_KEPT}, '*', 'at', ARGV[5], 'status', ARGV[2] == '' and 0 or ARGV[2],
           'stations', #ARGV - 5, 'fetched', fetched, 'cost_micro', ARGV[3], 'retry', retry, 'seconds', ARGV[4])
return 1
""")
_RESERVE = Script(reserve_script)


def new_call() -> str:
    """An id for one API call, from its reservation to its settlement."""
    return uuid.uuid4().hex


def reserve(r: redis.Redis, run: str, amount: int, call: str | None = None) -> bool:
    """Take `amount` (micro) from the run's budget for the call `call`; False: it does not fit (now exhausted).

    The call is on the run's record from now, at `amount`, until it settles. Sent twice, the same answer."""
    k = RunKeys(run)
    return int(_RESERVE(r, keys=[k.record, k.reserved, k.counters], args=[amount, call or new_call()])) >= 0


def settle(r: redis.Redis, run: str, call: str, batch: list[str], status: int | None, billed: int,
           seconds: float) -> bool:
    """The call `call` answered `status` (None: no answer) and was `billed` (micro, as the terms bill it; without
    an answer, what it reserved): give the rest back, count it in the run's figures. Once per call: sent again,
    it changes nothing and answers True again; False for a call never reserved."""
    k = RunKeys(run)
    return _SETTLE(r, keys=[k.record, k.reserved, k.counters, k.calls, k.asked],
                   args=[call, status or "", billed, round(seconds, 3), time.time(), *batch]) == 1


def exhausted(r: redis.Redis, run: str | None) -> bool:
    return run is not None and r.hget(RunKeys(run).record, "exhausted") == "1"


def state(r: redis.Redis, run: str) -> dict:
    """{budget (micro, or None), spent (micro), exhausted}."""
    budget, spent, flag = r.hmget(RunKeys(run).record, "budget_micro", "spent_micro", "exhausted")
    budget = int(budget if budget is not None else UNLIMITED)
    return {"budget": None if budget == UNLIMITED else budget, "spent": int(spent or 0), "exhausted": flag == "1"}
