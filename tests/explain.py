"""What a failing test says: the station, the hour, the field, expected against got, in one sentence.

pytest's own diff of two containers is truncated and names no station. These functions
turn the usual comparisons of the chapters' tests into a sentence an attendee can act on;
conftest.py's `pytest_assertrepr_compare` uses `compared` for `==` between two summaries
(dicts with a "station"), two lists of them, or two Counters of findings, and a test may
call them for its own message (`assert ..., explain.findings(expected, found)`).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

SHOWN = 3   # differences named in one message; the rest are counted


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def summary(expected: Mapping, got: Mapping) -> str:
    """The fields of one summary (or any record) that differ: "WX00007 on 2026-01-15: temp_max 31.2 expected, got 29.9"."""
    where = " ".join(str(expected.get(key)) for key in ("station", "day") if expected.get(key) is not None)
    wrong = [f"{field} {_value(expected.get(field))} expected, got {_value(got.get(field))}"
             for field in sorted(set(expected) | set(got)) if expected.get(field) != got.get(field)]
    return f"{where or 'the record'}: " + "; ".join(wrong) if wrong else f"{where}: equal"


def summaries(expected: Iterable[Mapping], got: Iterable[Mapping]) -> str:
    """Two lists of records keyed by station: the ones missing, extra, or differing, named."""
    theirs = {row.get("station"): row for row in expected}
    ours = {row.get("station"): row for row in got}
    lines = [f"{station}: missing" for station in sorted(set(theirs) - set(ours), key=str)]
    lines += [f"{station}: not expected" for station in sorted(set(ours) - set(theirs), key=str)]
    lines += [summary(theirs[s], ours[s]) for s in sorted(set(theirs) & set(ours), key=str) if theirs[s] != ours[s]]
    return _few(lines)


def findings(expected: Iterable[tuple], got: Iterable[tuple]) -> str:
    """Findings as (station, hour, rule, value) tuples: the ones missed and the false alarms, by hour and station."""
    expected, got = Counter(expected), Counter(got)
    missed = [f"hour {hour} of {station}: {_value(value)} not flagged as {rule}"
              for station, hour, rule, value in sorted((expected - got).elements(), key=str)]
    false = [f"hour {hour} of {station}: {_value(value)} flagged as {rule}, but it is a clean reading"
             for station, hour, rule, value in sorted((got - expected).elements(), key=str)]
    return _few(missed + false)


def _few(lines: list[str]) -> str:
    if not lines:
        return "no difference"
    more = f" (and {len(lines) - SHOWN} more)" if len(lines) > SHOWN else ""
    return "; ".join(lines[:SHOWN]) + more


def _is_record(value) -> bool:
    return isinstance(value, Mapping) and "station" in value


def _is_findings(value) -> bool:
    return isinstance(value, Counter) and all(isinstance(k, tuple) and len(k) == 4 for k in value)


def compared(left, right) -> str | None:
    """One sentence for `left == right` failing, when both are summaries or findings; None otherwise."""
    if _is_record(left) and _is_record(right):
        return summary(right, left)
    if isinstance(left, list) and isinstance(right, list) and left and right \
            and all(map(_is_record, left)) and all(map(_is_record, right)):
        return summaries(right, left)
    if _is_findings(left) and _is_findings(right):
        return findings(right, left)
    return None


def by_name(expected: Mapping[str, Mapping], got: Mapping[str, Mapping]) -> str:
    """Rows keyed by a name (a worker, a queue): the ones missing, extra, or differing, field by field:
    "w1@host: processed 7 expected, got 5"."""
    lines = [f"{name}: missing" for name in sorted(set(expected) - set(got))]
    lines += [f"{name}: not expected" for name in sorted(set(got) - set(expected))]
    for name in sorted(set(expected) & set(got)):
        wrong = [f"{field} {_value(expected[name].get(field))} expected, got {_value(got[name].get(field))}"
                 for field in sorted(set(expected[name]) | set(got[name]))
                 if expected[name].get(field) != got[name].get(field)]
        if wrong:
            lines.append(f"{name}: " + "; ".join(wrong))
    return _few(lines)


def findings_per_hour(expected: Iterable[tuple], got: Iterable[tuple]) -> str:
    """Like `findings`, but an hour that has a finding of another rule says so: "hour 14 of WX00003: 999.9 is
    implausible, and was flagged as spike too" rather than calling an implausible value a clean reading."""
    expected, got = Counter(expected), Counter(got)
    rules = {}
    for station, hour, rule, _ in expected:
        rules.setdefault((station, hour), []).append(rule)
    missed = [f"hour {hour} of {station}: {_value(value)} not flagged as {rule}"
              for station, hour, rule, value in sorted((expected - got).elements(), key=str)]
    false = []
    for station, hour, rule, value in sorted((got - expected).elements(), key=str):
        others = [r for r in rules.get((station, hour), []) if r != rule]
        false.append(f"hour {hour} of {station}: {_value(value)} is {' and '.join(others)}, and was flagged as "
                     f"{rule} too" if others else
                     f"hour {hour} of {station}: {_value(value)} flagged as {rule}, but it is a clean reading")
    return _few(missed + false)
