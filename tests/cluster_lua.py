"""What the cluster tests check a Lua script with (not lesson code).

- `undeclared(text)`: a static check of one script's text. For every `redis.call(...)` and
  `redis.pcall(...)` whose command is a string literal, the arguments that are keys must be
  written `KEYS[...]`: the first argument for most commands, every argument for DEL, EXISTS,
  UNLINK, TOUCH and MGET, the first two for SMOVE, RENAME, LMOVE and the like; TIME and other
  keyless commands are skipped. What it does not do: follow a key through a Lua variable (one
  is reported, as not KEYS[...]), nor check that two KEYS[i] share a slot (the run on a real
  cluster does). A command that is not a literal is reported too.
- `StrictCluster`: the pipeline's cluster client, but every script it sends gets a `#!lua`
  first line. Redis 7 runs a script without one in a compatibility mode that lets it touch an
  undeclared key of another slot if that slot happens to be on the same node; with it, any key
  outside the slot of the declared keys fails ("...do not hash to the same slot"). It records
  every script text it ran.
"""
from __future__ import annotations

import hashlib
import re

from workshop.celery_app import StateCluster

KEYLESS = {"TIME", "PING", "ECHO", "DBSIZE", "RANDOMKEY"}
ALL_KEYS = {"DEL", "EXISTS", "UNLINK", "TOUCH", "MGET"}
TWO_KEYS = {"SMOVE", "RENAME", "RENAMENX", "LMOVE", "RPOPLPUSH", "COPY", "ZRANGESTORE"}
_CALL = re.compile(r"redis\.p?call\s*\(")
_KEY = re.compile(r"KEYS\[[^\[\]]+\]")


def _arguments(text: str, start: int) -> list[str]:
    """The top-level comma-separated arguments of the call whose '(' ends at `start`."""
    args, depth, quote, current, i = [], 0, None, "", start
    while i < len(text):
        c = text[i]
        if quote:
            current += c
            if c == "\\":
                current += text[i + 1]
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote, current = c, current + c
        elif c in "([{":
            depth, current = depth + 1, current + c
        elif c in ")]}":
            if depth == 0:
                args.append(current.strip())
                return args
            depth, current = depth - 1, current + c
        elif c == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += c
        i += 1
    raise ValueError("unbalanced call")


def undeclared(text: str) -> list[str]:
    """Each `redis.call` of `text` that names a key not given as KEYS[...], as 'COMMAND arg'."""
    found = []
    for match in _CALL.finditer(text):
        args = _arguments(text, match.end())
        command = args[0].strip("'\"").upper() if args[0][:1] in "'\"" else None
        if command is None:
            found.append(f"(command {args[0]} not a literal)")
            continue
        if command in KEYLESS:
            continue
        keys = args[1:] if command in ALL_KEYS else args[1:3] if command in TWO_KEYS else args[1:2]
        found += [f"{command} {key}" for key in keys if not _KEY.fullmatch(key)]
    return found


SHEBANG = "#!lua\n"


class StrictCluster(StateCluster):
    """The pipeline's cluster client, with `#!lua` before every script it sends (see above); `.ran` holds them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ran: set[str] = set()
        self._sha: dict[str, str] = {}   # the sha of a text -> the sha of the text with the shebang

    def _strict(self, text: str) -> str:
        self.ran.add(text)
        strict = SHEBANG + text
        self._sha[hashlib.sha1(text.encode()).hexdigest()] = hashlib.sha1(strict.encode()).hexdigest()
        return strict

    def execute_command(self, *args, **kwargs):
        name = str(args[0]).upper()
        if name in ("EVAL", "SCRIPT LOAD"):
            args = (args[0], self._strict(args[1]), *args[2:])
        elif name == "EVALSHA" and args[1] in self._sha:
            args = (args[0], self._sha[args[1]], *args[2:])
        return super().execute_command(*args, **kwargs)
