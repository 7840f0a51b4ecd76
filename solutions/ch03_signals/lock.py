"""One owner at a time, one turn at a time: a Redis lock whose value is the owner's token, with a TTL.

- acquire: SET key token NX PX ttl. Atomic: of any number of callers, one gets it.
- refresh: one turn of a chain of batches, in one Lua script: "if the lock is
  still my token and this chain is at turn n, move it to n + 1, note the task
  id of that turn and give the lock a fresh TTL". A GET then a PEXPIRE from
  Python would leave a gap in which the lock can expire and be taken by another
  owner, whose lock we would then extend. The turn number is what makes a
  message that comes back (run again after its worker died between its success
  and its acknowledgement) end as "lost" instead of starting a second chain.
  The turn's new task id also tells that message from the same call sent twice
  (redis-py re-sends a command whose reply it lost): the repeat answers True again.
- hold: keep the lock at least this long (a retry's countdown), never shorter.
- release: "if the value is still my token, delete it", in one Lua script, for the
  same reason: never delete a lock someone else took after ours expired. Sent
  twice, the second run finds the lock gone and changes nothing.

The TTL is what makes a dead owner's lock go away on its own: nobody has to
release the lock of a process that crashed.

Written out here to be understood. In production, redis-py's `redis.lock.Lock`
(`r.lock(name, timeout=...)`) is the maintained version of acquire, extend and
release by token; the turn counter is what this loop adds to it.
"""
from __future__ import annotations

import redis

from workshop.lua import Script

RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl in ms. Extends, never shortens.
HOLD = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[1], ARGV[2]) end
return 1
"""


def acquire(r: redis.Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Take the lock for `owner` if nobody holds it; True if we got it.

    Safe twice: SET NX alone answers "not set" to its own repeat (redis-py sends it again
    after a lost reply), and the start that took the lock would think another loop had it,
    leaving a lock no loop holds until its TTL runs out. With GET it answers what the key
    held: nothing (taken now) or `owner` itself (taken by this very call, sent again)."""
    return r.set(key, owner, nx=True, px=ttl_ms, get=True) in (None, owner)


def refresh_script() -> str:
    """The Lua of one turn. KEYS[1] lock, KEYS[2] turns; ARGV: owner, chain, turn, task id, ttl in ms. 1 or 0."""
    # >>> exercise 3.4: return the Lua of ONE atomic step: 1 only if ARGV[1] holds the lock and chain ARGV[2] stands at turn ARGV[3] (no entry = turn 0); then the chain stands at turn + 1 with the task id ARGV[4] beside it, and the lock lives at least ARGV[5] ms more (never shortened). Safe twice: the same call sent again (its reply was lost) answers 1 again and changes nothing
    return """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local at = tonumber(redis.call('hget', KEYS[2], ARGV[2]) or '0')
if at == tonumber(ARGV[3]) + 1 and redis.call('hget', KEYS[2], ARGV[2] .. ':task') == ARGV[4] then
  return 1   -- this very call, sent again: it took the turn already
end
if at ~= tonumber(ARGV[3]) then return 0 end
redis.call('hset', KEYS[2], ARGV[2], at + 1, ARGV[2] .. ':task', ARGV[4])
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[5]) then redis.call('pexpire', KEYS[1], ARGV[5]) end
return 1
"""
    # <<<


_REFRESH, _HOLD, _RELEASE = Script(refresh_script), Script(HOLD), Script(RELEASE)


def refresh(r: redis.Redis, key: str, turns: str, owner: str, chain: str, turn: int, task_id: str,
            ttl_ms: int) -> bool:
    """Take turn `turn` of `chain` for `owner`: True if the lock is still ours and the chain at that turn.

    The chain moves on to turn + 1, whose message will carry `task_id`; the lock lives
    at least `ttl_ms` more (never shortened: a retry's countdown may hold it longer).
    The same call sent twice (redis-py re-sends after a lost reply) answers True both
    times: `task_id` is new for each turn, so a repeat is told from a second message.
    """
    return _REFRESH(r, keys=[key, turns], args=[owner, chain, turn, task_id, ttl_ms]) == 1


def hold(r: redis.Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Keep `owner`'s lock for at least `ttl_ms` (never shorter); False if the lock is not ours."""
    return _HOLD(r, keys=[key], args=[owner, ttl_ms]) == 1


def release(r: redis.Redis, key: str, owner: str) -> bool:
    """Delete the lock if `owner` still holds it; False if it was gone or someone else's."""
    return _RELEASE(r, keys=[key], args=[owner]) == 1


def owner(r: redis.Redis, key: str) -> str | None:
    return r.get(key)


def chain_of(r: redis.Redis, turns: str, task_id: str) -> tuple[str, int] | None:
    """(chain, its turn now) of the chain whose latest turn was task `task_id`; None if none was."""
    seen = r.hgetall(turns)
    for field, value in seen.items():
        if field.endswith(":task") and value == task_id:
            chain = field.removesuffix(":task")
            return chain, int(seen.get(chain, 0))
    return None
