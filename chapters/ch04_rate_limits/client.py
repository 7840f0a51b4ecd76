# Exercise copy of solutions/ch04_rate_limits/client.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The API call, as chapter 4 makes it: chapter 1's client, plus what a 429 says.

`fetch_readings` (chapter 1) raises on any HTTP error. Here a 429 becomes
`RateLimited`, carrying the two things the pipeline acts on: how long the API
asks us to stay away (Retry-After, either form) and the limit it enforces now
(X-RateLimit-Limit). A 200 whose body lacks a station's readings is malformed,
like one that is not JSON at all.
"""
from __future__ import annotations

import requests

from ch01_periodic.stations_api import fetch_readings
from workshop import settings as settings_mod

from . import retry_after


class RateLimited(Exception):
    """The API answered 429: pause every worker for `wait.seconds`, follow `limit` if it changed."""

    def __init__(self, wait: retry_after.RetryAfter, limit: str | None):
        super().__init__(f"429 Too Many Requests: Retry-After {wait}, X-RateLimit-Limit {limit}")
        self.wait, self.limit = wait, limit

    def __reduce__(self):
        # Exception pickles self.args, the message alone, which __init__ cannot take back:
        # rebuild from (wait, limit) so a prefork pool returns this error, not a wrapper.
        return type(self), (self.wait, self.limit)


class MalformedBody(ValueError):
    """A 200 whose body is JSON, but not the readings asked for."""


def fetch(batch: list[str], day: str, settings: settings_mod.Settings | None = None) -> dict[str, list]:
    """{station: its 24 readings} for the batch; RateLimited on a 429, requests' errors on others."""
    try:
        readings = fetch_readings(batch, day, settings)
    except requests.HTTPError as error:
        response = error.response
        if response is not None and response.status_code == 429:
            raise RateLimited(retry_after.parse(response.headers.get("Retry-After")),
                              response.headers.get("X-RateLimit-Limit")) from error
        raise
    missing = [station for station in batch if not isinstance(readings.get(station), list)]
    if missing:
        raise MalformedBody(f"no readings for {len(missing)} of {len(batch)} stations, e.g. {missing[0]}")
    return readings
