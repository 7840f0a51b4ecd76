# Exercise copy of solutions/ch02_segmented/snapshot.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""What a segment did, seen in Redis: each key of the day with its type and size."""
from __future__ import annotations

import redis

from . import keys

_SIZE = {"set": "scard", "hash": "hlen", "list": "llen", "zset": "zcard", "string": "strlen"}


def key_table(r: redis.Redis, day: str | None = None) -> dict[str, tuple[str, int]]:
    """{key: (type, size)}; the many raw:<station> strings are one row, `raw:*`, sized by their count."""
    k = keys.for_day(day)
    table, raw = {}, 0
    for key in sorted(r.scan_iter(match=k.pattern, count=1000)):
        if key.startswith(k.raw("")):
            raw += 1
            continue
        kind = r.type(key)
        table[key] = (kind, getattr(r, _SIZE[kind])(key) if kind in _SIZE else 0)
    if raw:
        table[k.raw("*")] = ("string", raw)
    return table


def show(before: dict, after: dict) -> None:
    """Print key -> type -> size before -> size after, for every key in either table."""
    rows = [("key", "type", "before", "after")]
    for key in sorted(set(before) | set(after), key=_order):
        kind = (after.get(key) or before.get(key))[0]
        size = lambda table: str(table[key][1]) if key in table else "-"  # noqa: E731
        rows.append((key, kind, size(before), size(after)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}")


def _order(key: str) -> tuple[int, str]:
    """Keys in the order a station travels through them."""
    stages = ("stations", "pending", "fetch:errors", "raw:", "fetched", "summaries", "transformed", "persisted")
    tail = key.split(":", 2)[-1]
    return next((i for i, stage in enumerate(stages) if tail.startswith(stage)), len(stages)), key
