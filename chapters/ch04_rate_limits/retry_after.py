# Exercise copy of solutions/ch04_rate_limits/retry_after.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Reading `Retry-After`: how long a 429 asks us to stay away.

RFC 9110 allows the header on a 503 (and 3xx) too; this workshop's client reads
it on a 429 only (client.py): a 503 is a failed attempt, retried with backoff.

RFC 9110 §10.2.3 allows two forms, and a client must read both:

    Retry-After: 120                              delay-seconds: 1*DIGIT, whole seconds
    Retry-After: Fri, 31 Dec 1999 23:59:59 GMT    an HTTP-date: not before then

An HTTP-date (§5.6.7) comes in exactly three forms, all GMT, all case-sensitive:

    Sun, 06 Nov 1994 08:49:37 GMT     IMF-fixdate, the one senders must use
    Sunday, 06-Nov-94 08:49:37 GMT    RFC 850, obsolete; a two-digit year more than
                                      50 years ahead is read as the century before
    Sun Nov  6 08:49:37 1994          asctime, obsolete; no zone, and means GMT

Each is matched whole by a strict pattern (ASCII digits only, day and month names
as the RFC spells them, "GMT" itself); the day name's form is checked, not whether
it is the right weekday. Anything else ("+0100" or "UTC" zones, "jan", no
seconds, "1.5", "-3", an empty value, 31 Feb) is junk: we wait a fallback, log a
warning saying so, and neither crash nor hammer the API. A missing header (None)
also gets the fallback, without a warning: no header is not a broken one. A huge
value is capped, so that one odd header cannot park the pipeline for a day (nor
outlast the broker's visibility timeout).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from typing import NamedTuple

FALLBACK = 1.0     # seconds to wait when the header is missing or junk
LONGEST = 120.0    # seconds: the most any header can make us wait

log = logging.getLogger(__name__)


class RetryAfter(NamedTuple):
    seconds: float   # how long to wait from `now`, at least 0
    form: str        # "delay-seconds", "http-date" or "fallback"
    raw: str | None  # the header as received

    def __str__(self) -> str:
        return f"{self.seconds:g} s ({self.form}{'' if self.form != 'fallback' else f': {self.raw!r} is not a Retry-After'})"


# [0-9], never \d: \d also matches non-ASCII digits such as "٣".
_OWS = " \t"   # the only whitespace HTTP allows around a field value
_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = rf"(?P<month>{'|'.join(_MONTHS)})"
_DAY_NAME = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_NAME_L = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_HTTP_DATES = [re.compile(pattern, re.ASCII) for pattern in (
    rf"{_DAY_NAME}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT",    # IMF-fixdate
    rf"{_DAY_NAME_L}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<yy>[0-9]{{2}}) {_TIME} GMT",  # RFC 850
    rf"{_DAY_NAME} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})",  # asctime
)]


def _http_date(text: str, now: float) -> dt.datetime | None:
    """The moment an HTTP-date names, in UTC; None if `text` is not one or names no real moment."""
    match = next(filter(None, (pattern.fullmatch(text) for pattern in _HTTP_DATES)), None)
    if match is None:
        return None
    f = match.groupdict()
    month, day = _MONTHS.index(f["month"]) + 1, int(f["day"])
    hour, minute, second = int(f["hour"]), int(f["minute"]), int(f["second"])
    if f.get("yy") is not None:
        # RFC 9110 §5.6.7: a year more than 50 years ahead is the most recent past one
        # ending in yy; so yy names the one year ending so in (now - 50 y, now + 50 y].
        today = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        limit = (today.year + 50, today.month, today.day, today.hour, today.minute, today.second)
        year = today.year - today.year % 100 + int(f["yy"])
        if (year + 100, month, day, hour, minute, second) <= limit:
            year += 100
        elif (year, month, day, hour, minute, second) > limit:
            year -= 100
    else:
        year = int(f["year"])
    leap = second == 60   # RFC 5322 §3.3 allows 23:59:60; POSIX time folds it into the next second
    try:
        when = dt.datetime(year, month, day, hour, minute, second - leap, tzinfo=dt.timezone.utc)
    except ValueError:     # 31 Feb, 25:00, year 0000
        return None
    return when + dt.timedelta(seconds=leap)


def _fallback(value: str | None, fallback: float, longest: float) -> RetryAfter:
    wait = RetryAfter(min(fallback, longest), "fallback", value)
    if value is not None:  # a missing header is normal; a broken one is worth a line in the log
        log.warning("Retry-After header %r is not a valid Retry-After (delay-seconds or an "
                    "HTTP-date in GMT); waiting %g s instead", value, wait.seconds)
    return wait


def parse(value: str | None, now: float | None = None, fallback: float = FALLBACK,
          longest: float = LONGEST) -> RetryAfter:
    """The wait a Retry-After header asks for, in seconds from `now` (default: time.time()), at most `longest`."""
    # exercise 4.3: delay-seconds (ASCII digits, no sign, no fraction) or an HTTP-date in GMT (_http_date), as the seconds to wait from `now`, never below 0 nor above `longest`; anything else, or no header, is the fallback wait (_fallback, which logs junk); the RetryAfter says which form was read
    raise NotImplementedError("exercise 4.3: delay-seconds (ASCII digits, no sign, no fraction) or an HTTP-date in GMT (_http_date), as the seconds to wait from `now`, never below 0 nor above `longest`; anything else, or no header, is the fallback wait (_fallback, which logs junk); the RetryAfter says which form was read")
