"""One owner at a time: a Redis lock whose value is the owner's token, with a TTL.

- acquire: SET key token NX PX ttl. Atomic: of any number of callers, one gets it.
- refresh: "if the value is still my token, extend the TTL", in one Lua script.
  A GET then a PEXPIRE from Python would leave a gap in which the lock can expire
  and be taken by another owner, whose lock we would then extend.
- release: "if the value is still my token, delete it", in one Lua script, for the
  same reason: never delete a lock someone else took after ours expired.

The TTL is what makes a dead owner's lock go away on its own: nobody has to
release the lock of a process that crashed.
"""
from __future__ import annotations

import redis

RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def acquire(r: redis.Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Take the lock for `owner` if nobody holds it; True if we got it."""
    return bool(r.set(key, owner, nx=True, px=ttl_ms))


def refresh(r: redis.Redis, key: str, owner: str, ttl_ms: int) -> bool:
    """Give `owner`'s lock a fresh TTL; False if the lock is gone or someone else's."""
    # >>> exercise 3.2: ONE Lua script via r.eval(script, 1, key, owner, ttl_ms): if GET KEYS[1] == ARGV[1] then return PEXPIRE KEYS[1] ARGV[2] end, else return 0; True when it returned 1 (see RELEASE)
    script = """
    if redis.call('get', KEYS[1]) == ARGV[1] then
        return redis.call('pexpire', KEYS[1], ARGV[2])
    end
    return 0
    """
    return r.eval(script, 1, key, owner, ttl_ms) == 1
    # <<<


def release(r: redis.Redis, key: str, owner: str) -> bool:
    """Delete the lock if `owner` still holds it; False if it was gone or someone else's."""
    return r.eval(RELEASE, 1, key, owner) == 1


def owner(r: redis.Redis, key: str) -> str | None:
    return r.get(key)
