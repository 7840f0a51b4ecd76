# Exercise copy of solutions/ch04_rate_limits/turn.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""A fetch chain's next turn in one round trip: the stop switch, the turn (chapter 3), the next lease.

Chapter 3's handler takes a turn step by step: the turn (lock.refresh), the stop
switch, the next batch; chapter 4 adds the lease. Three or four round trips to
Redis, after every batch. While the loop fetches, the answer is almost always the
same ("not stopped, the turn is ours, here is a batch"), so chapter 4's chains ask
it all in one script, composed from the chapters' own Lua: each piece is a Lua
function whose parameters are named KEYS and ARGV, so its text is the chapter's,
unchanged, and it sees only its own keys and arguments.

    stop switch set?            -> "stopped"  (nothing taken: the loop ends as chapter 3 says)
    nothing to lease?           -> "none"     (nothing taken: the lead goes on as chapter 3 does)
    lock.refresh says no        -> "lost"
    a lease expired             -> "expired"  (the turn taken: the caller reaps, then leases: leases.lease)
    the lease                   -> "leased", the batch

Safe twice (workshop.lua.once): the same call sent again answers what the first did.
Every key is the day's ({day}): one Redis Cluster slot.
"""
from __future__ import annotations

import redis

from ch03_signals import lock
from ch03_signals.keys import LoopKeys
from ch03_signals.messages import Turn
from workshop.lua import Script, once

from . import leases
from .keys import for_day

def piece(name: str, lua: str) -> str:
    """A chapter's script as a Lua function of its own KEYS and ARGV."""
    return f"local function {name}(KEYS, ARGV)\n{lua}\nend\n"


# KEYS: 1 stop, 2 lock, 3 turns, 4 pending, 5 in flight, 6 holders, 7 attempts, 8 this call's answer (once: the
# whole turn is answered once, so the lease inside it needs no answer of its own). ARGV: 1 owner, 2 chain, 3 turn, 4 the next turn's task id,
# 5 the lock's TTL (ms), 6 stations per batch, 7 the lease (ms), 8 the lease's token.
_TURN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'stopped'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
if redis.call('ZCARD', KEYS[4]) == 0 and not redis.call('ZRANGE', KEYS[5], '-inf', now, 'BYSCORE', 'LIMIT', 0, 1)[1] then
  return {'none'}
end
if refresh({KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]}) ~= 1 then return {'lost'} end
local taken = lease({KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, {ARGV[6], ARGV[7], ARGV[8], ''})
if not taken then return {'expired'} end   -- rare: the reaper (exercise 4.4) runs from Python, as before
return {'leased', unpack(taken)}
"""


def turn_script() -> str:
    return once(piece("refresh", lock.refresh_script()) + piece("lease", leases.lease_script()) + _TURN)


_SCRIPT = Script(turn_script)   # made at its first call: refresh_script is exercise 3.4


def take(r: redis.Redis, k: LoopKeys, owner: str, turn: Turn, following: Turn, ttl_ms: int, count: int,
         lease_seconds: float) -> tuple[str, list[str]]:
    """Take `turn` of its chain for `owner` and lease the next batch for `following`'s message, in one
    round trip: ("stopped" | "none" | "lost" | "expired", []) or ("leased", the batch)."""
    mine, token = for_day(k.day), leases.token(following.task_id)
    answer = _SCRIPT(r, keys=[k.stop, k.lock, k.turns, mine.pending, mine.in_flight, mine.holders, mine.attempts,
                              f"{k.base}:turn:{following.task_id}"],
                     args=[owner, turn.chain, turn.number, following.task_id, ttl_ms, count,
                           max(1, int(lease_seconds * 1000)), token])
    return answer[0], list(answer[1:])
