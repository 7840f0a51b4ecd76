# Exercise copy of solutions/ch04_rate_limits/retry_after.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Reading `Retry-After`: how long a 429 (or a 503) asks us to stay away.

RFC 9110 §10.2.3 allows two forms, and a client must read both:

    Retry-After: 120                              delay-seconds: a whole number of seconds
    Retry-After: Fri, 31 Dec 1999 23:59:59 GMT    an HTTP-date: not before then

An HTTP-date may come in the preferred IMF-fixdate form or the two obsolete ones
(RFC 850, asctime); all three are GMT. Anything else (empty, negative, "soon",
"1.5", a date that does not exist) is junk: we wait a fallback and say so, we do
not crash and we do not hammer the API. A huge value is capped, so that one odd
header cannot park the pipeline for a day (nor outlast the broker's visibility timeout).
"""
from __future__ import annotations

import datetime as dt
import email.utils
import time
from typing import NamedTuple

FALLBACK = 1.0     # seconds to wait when the header is missing or junk
LONGEST = 120.0    # seconds: the most any header can make us wait


class RetryAfter(NamedTuple):
    seconds: float   # how long to wait from `now`, at least 0
    form: str        # "delay-seconds", "http-date" or "fallback"
    raw: str | None  # the header as received

    def __str__(self) -> str:
        return f"{self.seconds:g} s ({self.form}{'' if self.form != 'fallback' else f': {self.raw!r} is not a Retry-After'})"


def parse(value: str | None, now: float | None = None, fallback: float = FALLBACK,
          longest: float = LONGEST) -> RetryAfter:
    """The wait a Retry-After header asks for, in seconds from `now` (default: time.time()), at most `longest`."""
    # exercise 4.2: strip the text; all ASCII digits -> delay-seconds; else email.utils.parsedate_to_datetime (no tzinfo means GMT) -> seconds from now, at least 0 -> http-date; ValueError/TypeError -> RetryAfter(fallback, "fallback", value); cap every wait at `longest`
    raise NotImplementedError('exercise 4.2: strip the text; all ASCII digits -> delay-seconds; else email.utils.parsedate_to_datetime (no tzinfo means GMT) -> seconds from now, at least 0 -> http-date; ValueError/TypeError -> RetryAfter(fallback, "fallback", value); cap every wait at `longest`')
