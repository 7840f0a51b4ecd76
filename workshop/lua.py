"""Lua scripts sent by their SHA: made once per module, loaded once per Redis, then EVALSHA.

`r.register_script(text)` builds a new Script object (and hashes the text) each
time it is called, and `r.eval(text, ...)` sends the whole text every time: on a
loop turn that runs a few scripts, that is work and bytes for nothing. A module
makes its `Script` once; a call sends the 40-character SHA, and only a Redis that
does not know it yet (a new server, a restart, SCRIPT FLUSH) gets the text, once.

A script whose text comes from an exercise function (a stub until the attendee
writes it) is made at its first call: `Script(gcra_script)` takes the function.

Like any command, a script may run twice when redis-py sends it again after a
lost reply: that is the script's own business (see each one's "safe twice").
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Callable, Mapping, Sequence

import redis
from redis.exceptions import NoScriptError


class Script:
    """A Lua script, called as `script(r, keys=[...], args=[...])` on any client."""

    def __init__(self, source: str | Callable[[], str]):
        self._source = source
        self._text: str | None = source if isinstance(source, str) else None
        self._sha: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._source()   # an exercise's stub raises here, at the first call: its sentence
        return self._text

    @property
    def sha(self) -> str:
        if self._sha is None:
            self._sha = hashlib.sha1(self.text.encode("utf-8")).hexdigest()
        return self._sha

    def __call__(self, r: redis.Redis, keys: Sequence = (), args: Sequence = ()):
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            r.script_load(self.text)   # this Redis has not seen it yet (or forgot it): once, then by SHA
            return r.evalsha(self.sha, len(keys), *keys, *args)

    def call(self, keys: Sequence = (), args: Sequence = ()) -> tuple:
        """This script with its keys and arguments, to send with others in one round trip (`pipelined`)."""
        return self, tuple(keys), tuple(args)


def pipelined(r: redis.Redis, *calls: tuple) -> list:
    """Several scripts (`Script.call(...)`) in one round trip, not a transaction: their answers, in order, an
    error answer as the exception (not raised), for the caller to judge. A script this Redis does not know yet
    did not run: it is loaded and sent again on its own, once."""
    with r.pipeline(transaction=False) as p:
        for script, keys, args in calls:
            p.evalsha(script.sha, len(keys), *keys, *args)
        answers = p.execute(raise_on_error=False)
    for i, (script, keys, args) in enumerate(calls):
        if isinstance(answers[i], NoScriptError):
            try:
                answers[i] = script(r, keys, args)
            except redis.ResponseError as error:
                answers[i] = error
    return answers


ANSWER_TTL = 3600   # seconds a call's answer is kept for a repeat: far longer than redis-py's retries take


def once(body: str) -> str:
    """Lua that runs `body` once per call: the LAST key is the call's own answer key (its id in the name).

    redis-py sends a script again when it lost the reply, and the script then runs again:
    `body` would see the state it left itself, and may answer otherwise ("lost" for a turn it
    took). Wrapped, the first run keeps its answer under that key, and a repeat returns it
    without running `body` again. `body` is a script body ending in `return ...` (a string, a
    number, a list or false). Give the answer key the hash tag of the script's other keys.
    """
    return f"""
local said = redis.call('GET', KEYS[#KEYS])
if said then return cjson.decode(said)[1] end
local function body()
{body}
end
local answer = body()
redis.call('SET', KEYS[#KEYS], cjson.encode({{answer}}), 'EX', {ANSWER_TTL})
return answer
"""


def call_mark(key: str) -> str:
    """A key of its own for one call that writes `key`, in the same Redis Cluster slot: a script takes it
    (SET NX) before its write, so that the same call sent twice writes once. One per call: a new id each time."""
    mark = f"once:{uuid.uuid4().hex}"
    return f"{key}:{mark}" if "{" in key else f"{{{key}}}:{mark}"   # an untagged key: itself as the tag


# KEYS[1] a stream, KEYS[2] the call's mark; ARGV[1] the stream's approximate length cap, then field, value, ...
_APPEND = Script(f"""
local said = redis.call('GET', KEYS[2])
if said then return said end   -- this call, sent again: the entry it added
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'EX', {ANSWER_TTL})
return id
""")

# KEYS[1] a list, KEYS[2] the call's mark; ARGV[1] how many to keep (the newest), then the items.
_PUSH = Script(f"""
if not redis.call('SET', KEYS[2], 1, 'NX', 'EX', {ANSWER_TTL}) then return 1 end   -- pushed already
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return 1
""")


def append_once(r: redis.Redis, stream: str, fields: Mapping, maxlen: int) -> str | None:
    """XADD `fields` to `stream` (capped at about `maxlen`) once, even if redis-py sends it twice; the entry's
    id (a repeat answers the same). A log entry written twice would be a batch that ran twice, which it did not."""
    flat = [str(item) for pair in fields.items() for item in pair]
    return _APPEND(r, keys=[stream, call_mark(stream)], args=[maxlen, *flat])


def push_once(r: redis.Redis, key: str, items: Sequence, keep: int) -> None:
    """RPUSH `items` to the list `key` once (keeping its newest `keep`), even if redis-py sends it twice."""
    _PUSH(r, keys=[key, call_mark(key)], args=[keep, *items])


# KEYS[1] a counter, KEYS[2] the call's mark.
_INCR = Script(f"""
local said = redis.call('GET', KEYS[2])
if said then return tonumber(said) end   -- this call, sent again: the count it made
local n = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], n, 'EX', {ANSWER_TTL})
return n
""")


def incr_once(r: redis.Redis, key: str) -> int:
    """INCR `key` once, even if redis-py sends it twice; the count (a repeat answers the same)."""
    return int(_INCR(r, keys=[key, call_mark(key)]))
