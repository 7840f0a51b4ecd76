"""A circuit breaker: when the API is down, stop asking it, pause every worker, and probe.

Retries and halving (retries.py, leases.py) are right when a failure follows a
batch: the API's bad moment, or one station that breaks every request it is in.
They are wrong when the API itself is down. Then every batch fails, each failure
counts an attempt, every batch is halved and halved again, and within minutes the
whole day is dead-lettered for the API's fault, while each worker waits out
timeouts on requests that cannot succeed.

So failures that say "the API is not answering" (a time limit, soft or hard; no
connection; a timeout; a 5xx) are also counted for the API as a whole. After
AFTER of them in a row, of one kind, with no success in between, and not all of
them batches that share a station, the circuit *opens*:

              AFTER failures in a row, of one kind, across different batches
    closed ──────────────────────────────────────────────────────────────> open: every worker paused
      ^                                                                     │  (pause.py), FIRST s, then
      │                                                                     v  twice as long, at most CAP s
      └──── the probe succeeds ──── half-open: the pause is over; ONE request ──── the probe fails ──> open
                                    goes (the probe), the others wait for it

While the circuit is open, failures are not the stations' fault: their attempt
is not counted (fetch.py hands the lease over uncounted and retries after the
pause, as for a 429; a batch killed by the hard time limit goes back to pending
uncounted), so nothing is dead-lettered because the API was down. Any success
closes the circuit and forgets the count.

"Not all of them batches that share a station": a station that hangs or breaks
its request follows its batch as it is halved, so every failure it causes shares
that one station. That is the poison-pill case, for the splitting to find; the
circuit stays closed. A day with one batch in flight cannot tell the two apart
until a second station fails: its first station may be dead-lettered first.

AFTER is retries.MAX_ATTEMPTS at most: a station dead-lettered on its last
attempt before the circuit could open would be lost to the outage. The probe
interval starts at FIRST seconds and doubles with each failed probe, up to CAP:
an outage of an hour costs a few dozen probes, not thousands of requests, and a
retry's countdown or a task's wait for the pause stays well below the broker's
visibility timeout (safety.py checks it).

Each transition is one script on the API's keys, on Redis's clock, and each
records the id of its call (the delivery's lease token) with its answer: sent
twice by redis-py, a failure counts once and answers the same.
"""
from __future__ import annotations

import json
import logging
from typing import NamedTuple

import redis

from workshop.lua import Script

from . import pause
from .keys import API, ApiKeys
from .retries import MAX_ATTEMPTS, Failure

KINDS = ("time limit", "unreachable", "timeout", "5xx")   # the failures that say "the API is not answering"
AFTER = 3          # failures in a row (one kind, different batches) that open the circuit
FIRST = 1.0        # seconds: the first pause before the probe
CAP = 60.0         # seconds: the longest pause between two probes
CALL_TTL = 3600    # seconds a call's answer is kept for a repeat: longer than any re-send of its script

if not 1 <= AFTER <= MAX_ATTEMPTS:   # not an assert: it must hold under -O too
    raise ValueError(f"circuit.AFTER={AFTER} must be between 1 and retries.MAX_ATTEMPTS={MAX_ATTEMPTS}: a station "
                     "dead-lettered before the circuit can open is lost to the outage; change AFTER.")

log = logging.getLogger(__name__)


class Verdict(NamedTuple):
    """What the circuit says after a failure: open (the failure was not the stations'), the failures
    counted, the seconds until the next probe, and what this call did ("opened", "reopened" or "")."""

    open: bool
    failures: int
    wait: float
    event: str


# KEYS: pause.py's (pause, limiter state, limit), the circuit, the pause log, this call's mark.
# ARGV: the call's id, the kind, AFTER, FIRST ms, CAP ms, CALL_TTL, pause.KEEP, then the batch's stations.
# Answers {state, failures, ms until the probe, event} as JSON; run again for the same call, the same answer.
_FAILED_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000      -- ms, on Redis's clock, as the limiter's
local seen = redis.call('GET', KEYS[6])
if seen then return seen end                                    -- this call was counted: the same answer
local function pause_all(asked)
"""

_FAILED = """
end
local kind = ARGV[2]
local function open(interval, failures, why)
  local paused = pause_all(interval)
  redis.call('HSET', KEYS[4], 'state', 'open', 'kind', kind, 'failures', failures, 'interval_ms', interval,
             'probe_at', string.format('%.3f', now + paused), 'why', why)
  redis.call('HDEL', KEYS[4], 'probe', 'probe_until')         -- the next probe is whoever asks first
  redis.call('RPUSH', KEYS[5], cjson.encode({at = now / 1000, asked = interval / 1000,
                                            paused_for = paused / 1000, why = why}))
  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[7]), -1)
  return paused
end
local c = redis.call('HMGET', KEYS[4], 'state', 'kind', 'failures', 'common', 'interval_ms', 'probe_at', 'probe')
local answer
if c[1] == 'open' then
  local failures, wait = tonumber(c[3]), tonumber(c[6]) - now
  if wait <= 0 and c[7] == ARGV[1] then                         -- the probe failed: open again, for longer
    failures = failures + 1
    local interval = math.min(tonumber(ARGV[5]), tonumber(c[5]) * 2)
    wait = open(interval, failures, 'circuit still open: ' .. kind .. ', the probe failed')
    answer = {'open', failures, wait, 'reopened'}
  else                                                          -- in flight before it opened, or not the probe
    answer = {'open', failures, math.max(0, wait), ''}
  end
else
  local failures, shared = 0, {}
  if c[2] == kind and c[4] then                                 -- the streak goes on: the stations its batches share
    failures = tonumber(c[3])
    local batch = {}
    for i = 8, #ARGV do batch[ARGV[i]] = true end
    for _, station in ipairs(cjson.decode(c[4])) do
      if batch[station] then shared[#shared + 1] = station end
    end
  else                                                          -- a new streak, of this kind
    for i = 8, #ARGV do shared[#shared + 1] = ARGV[i] end
  end
  failures = failures + 1
  if failures >= tonumber(ARGV[3]) and #shared == 0 then
    local wait = open(tonumber(ARGV[4]), failures, 'circuit open: ' .. kind .. ' x ' .. failures)
    answer = {'open', failures, wait, 'opened'}
  else
    redis.call('HSET', KEYS[4], 'state', 'closed', 'kind', kind, 'failures', failures,
               'common', #shared > 0 and cjson.encode(shared) or '[]')
    answer = {'closed', failures, 0, ''}
  end
end
answer = cjson.encode(answer)
redis.call('SET', KEYS[6], answer, 'EX', tonumber(ARGV[6]))
return answer
"""

# KEYS: the circuit, this call's mark; ARGV: CALL_TTL. Closes the circuit, the count forgotten: "closed" when
# it was open (the mark records it, so a repeat answers the same), else "quiet".
_SUCCEEDED = """
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'quiet' end                            -- the common case: one read
redis.call('DEL', KEYS[1])
if state ~= 'open' then return 'quiet' end
redis.call('SET', KEYS[2], 'closed', 'EX', tonumber(ARGV[1]))
return 'closed'
"""


def failed_script() -> str:
    """The failure's script: pause.py's pause (exercise 4.2) as the function that pauses every worker."""
    return _FAILED_PROLOGUE + pause.pause_core() + _FAILED


_FAILED_SCRIPT = Script(failed_script)   # made at its first call: pause_core is exercise 4.2
_SUCCEEDED_SCRIPT = Script(_SUCCEEDED)


def counts(failure: Failure) -> bool:
    """Whether the circuit counts this failure: one that says the API is not answering."""
    return failure.reason in KINDS


def failed(r: redis.Redis, failure: Failure, batch: list[str], call: str, name: str = API) -> Verdict:
    """A request for `batch` failed; `call` identifies it (the delivery's lease token): counted once.

    A failure of a kind the circuit does not count (a malformed body, ours) changes nothing: the
    verdict only says whether the circuit is open (a limiter timeout while it is: not the stations').
    """
    if not counts(failure) or not batch:
        now = state(r, name)
        return Verdict(now["state"] != "closed", now["failures"], now["next_probe_in"] or 0.0, "")
    k = ApiKeys(name)
    raw = _FAILED_SCRIPT(
        r, keys=[k.pause, k.state, k.limit, k.circuit, k.pauses, k.circuit_call(call)],
        args=[call, failure.reason, AFTER, int(FIRST * 1000), int(CAP * 1000), CALL_TTL, pause.KEEP, *batch])
    is_open, failures, wait_ms, event = json.loads(raw)
    verdict = Verdict(is_open == "open", int(failures), max(0.0, float(wait_ms)) / 1000, event)
    if event == "opened":
        log.warning("circuit open: %s x %d (the last for %s..%s); every worker paused, the next probe in %.1f s",
                    failure.reason, verdict.failures, batch[0], batch[-1], verdict.wait)
    elif event == "reopened":
        log.warning("circuit still open: the probe failed (%s); the next in %.1f s", failure.reason, verdict.wait)
    return verdict


def succeeded(r: redis.Redis, call: str, name: str = API) -> bool:
    """A request was answered: the API is up. Closes the circuit, the count forgotten; True if it was open."""
    script, keys, args = succeeded_call(call, name)
    return heard(script(r, keys, args))


def succeeded_call(call: str, name: str = API) -> tuple:
    """`succeeded`'s script call, to send with others in one round trip (workshop.lua.pipelined); its
    answer read by `heard`."""
    k = ApiKeys(name)
    return _SUCCEEDED_SCRIPT.call(keys=[k.circuit, k.circuit_call(call)], args=[CALL_TTL])


def heard(answer) -> bool:
    """`succeeded`'s answer: True if the circuit was open (and is closed now)."""
    if isinstance(answer, Exception):
        raise answer
    closed = answer == "closed"
    if closed:
        log.warning("circuit closed: the API answered again")
    return closed


# KEYS[1] the circuit; ARGV[1] the asker. Safe twice: the second run finds no probe of its.
_NO_PROBE = """
if redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then redis.call('HDEL', KEYS[1], 'probe', 'probe_until') end
return 1
"""
_SUCCEEDED_SCRIPT, _NO_PROBE_SCRIPT = Script(_SUCCEEDED), Script(_NO_PROBE)


def not_probing(r: redis.Redis, asker: str, name: str = API) -> None:
    """`asker` took a slot it will not use (its message was stale): if the slot was the open circuit's probe,
    it is the next asker's, not held until its time runs out."""
    _NO_PROBE_SCRIPT(r, keys=[ApiKeys(name).circuit], args=[asker])


def state(r: redis.Redis, name: str = API) -> dict:
    """{state: closed, open or half-open, kind, failures, next_probe_in: seconds, or None when closed}."""
    raw = r.hgetall(ApiKeys(name).circuit)
    if raw.get("state") != "open":
        return {"state": "closed", "kind": raw.get("kind"), "failures": int(raw.get("failures", 0)),
                "next_probe_in": None}
    seconds, micros = r.time()
    wait = max(0.0, (float(raw["probe_at"]) - (seconds * 1000 + micros / 1000)) / 1000)
    return {"state": "open" if wait > 0 else "half-open", "kind": raw.get("kind"),
            "failures": int(raw["failures"]), "next_probe_in": round(wait, 2)}
