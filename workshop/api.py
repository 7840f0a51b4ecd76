"""The fake Stations API: a small, fast, standard-library HTTP server that behaves
like the third-party API the workshop's pipelines fetch from.

It serves station ids (paginated) and the hourly readings of a batch of stations,
and it behaves like a real API in the ways that matter to a pipeline:

- it wants an API key (``X-API-Key``) and rate-limits each key with a token
  bucket, answering ``429`` with ``Retry-After`` and ``X-RateLimit-*`` headers;
- it injects faults from a seeded profile: 5xx errors, slow responses, malformed
  bodies, and sensor glitches in the data itself;
- it counts everything it answered (``GET /_stats``) so a test can compare what a
  pipeline *thinks* happened with what the API *saw*, down to a log of every
  sensor glitch it served;
- it bills per call from a published price list (a price per request plus one per
  station whose readings it returned; which answers are billed is part of the
  terms: ``billed="2xx"``, the default, or ``"all"``, 429s and 5xx too), and
  ``/_stats`` carries the bill: total, per status, per day asked for.

Every answer, down to a request http.server cannot parse, is JSON ``{"error": ...}``
with one sentence saying what to do instead:

- each path answers its own methods (``GET`` and ``HEAD`` on /stations, /readings,
  /_health and /_stats; ``POST`` on /_reset and /_config); any other method gets
  ``405`` with an ``Allow`` header. ``HEAD`` is handled exactly as ``GET`` (the same
  key check, rate-limit token, fault draw and counting: a HEAD of /readings counts
  its fetches) and sends the same status and headers, without the body;
- a request line over 64 KiB gets ``414``, too many or too long headers ``431``, a
  malformed request line or URL ``400`` (HTTP/2 and up ``505``); a body over ``MAX_BODY_BYTES`` gets ``413``
  without being read, a Content-Length that is not a whole number ``400`` and a
  chunked body ``411``. Each of these closes the connection.

Counting: ``/_stats`` counts every answer by status, the HTTP-layer refusals above
under their status only (no fetches, faults or fault_log entries). Not counted: the
control endpoints' own answers (GET /_health, GET /_stats, POST /_reset, POST
/_config: instruments, not traffic), and requests that get no answer at all: a
blank request line, or a connection closed or idle for 60 s before its request was
complete. ``peak_in_flight``: the most requests (control calls aside) being served at
once, slow answers' wait included: what more workers overlap.

Faults are reproducible whatever the thread timing: the fault of a request is a
pure function of (seed, which stations and date it asked for, how many times that
same request was seen before). A retry of a failed request therefore gets a new,
but again reproducible, draw.

Layers, each testable on its own:
``ApiConfig`` (validated knobs) -> ``TokenBucket`` -> ``StationsAPI.handle``
(the whole behaviour, no sockets) -> ``ApiServer`` (ThreadingHTTPServer around it)
-> ``main`` (the ``python -m workshop api`` command).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import email.utils
import functools
import json
import math
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, NamedTuple
from urllib.parse import parse_qs, urlsplit

from workshop import settings as workshop_settings
from workshop import stations

MAX_PER_PAGE = 1000
RETRY_AFTER_FORMS = ("seconds", "http-date")
BILLED_FORMS = ("2xx", "all")   # which answers the bill counts: successes only, or every answer past the key check
DEFAULT_GLITCH_KINDS = stations.DEFAULT_GLITCH_KINDS   # (a field of ApiConfig is named `stations`)
MICRO = 1_000_000               # the bill counts in millionths of the currency: sums stay exact
ERROR_STATUSES = (500, 502, 503)
FAULT_KINDS = ("error", "slow", "malformed")
JSON_TYPE = "application/json"
READ_METHODS = ("GET", "HEAD")
ROUTES = {"/stations": READ_METHODS, "/readings": READ_METHODS,   # path -> the methods it answers
          "/_health": READ_METHODS, "/_stats": READ_METHODS, "/_reset": ("POST",), "/_config": ("POST",)}
MAX_BODY_BYTES = 64 * 1024    # larger bodies are refused with 413, unread
LINGER_SECONDS = 1.0          # after a refusal, how long to discard what the client still sends...
LINGER_BYTES = 1024 * 1024    # ...and how much of it at most


# --------------------------------------------------------------------------- config

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class ApiConfig:
    """Every knob of the fake API. Frozen: a change makes a new config, swapped in whole."""

    key: str = "workshop-key"
    rate: float = 20.0            # requests per second per API key (bucket refill)
    burst: int = 20               # bucket capacity: requests allowed back to back
    max_batch: int = 50           # most stations one /readings request may ask for
    stations: int = 2000          # how many stations /stations lists
    page_size: int = 100          # default per_page of /stations
    error_rate: float = 0.0       # share of /readings answered with a 5xx
    slow_rate: float = 0.0        # share answered only after slow_seconds
    slow_seconds: float = 3.0
    malformed_rate: float = 0.0   # share answered 200 with a body that is not JSON
    glitch_rate: float = 0.0      # share of hourly readings that are sensor glitches
    glitch_kinds: tuple = DEFAULT_GLITCH_KINDS   # which kinds are drawn (stations.GLITCH_KINDS)
    price_request: float = 0.001  # the published price of one billed request (currency units)...
    price_station: float = 0.0002  # ...plus this per station whose readings a billed answer returned
    billed: str = "2xx"           # "2xx": only successful answers are billed; "all": 429s and 5xx too
    retry_after: str = "seconds"  # Retry-After form on 429: "seconds" or "http-date"
    seed: int = 42                # seeds the data set and the fault profile
    null_stations: tuple = ()     # stations whose first hour is served with "temperature_c": null

    def __post_init__(self):
        _require(isinstance(self.key, str) and bool(self.key.strip()),
                 "key must be a non-empty text; pass the key clients send in X-API-Key.")
        _require(_is_number(self.rate) and self.rate > 0,
                 f"rate must be a number of requests per second above 0, got {self.rate!r}; pass e.g. 20.")
        for name in ("burst", "max_batch", "stations"):
            value = getattr(self, name)
            _require(_is_whole(value) and value >= 1,
                     f"{name} must be a whole number of at least 1, got {value!r}; pass e.g. 20.")
        _require(_is_whole(self.page_size) and 1 <= self.page_size <= MAX_PER_PAGE,
                 f"page_size must be a whole number from 1 to {MAX_PER_PAGE}, got {self.page_size!r}; "
                 "pass e.g. 100.")
        for name in ("error_rate", "slow_rate", "malformed_rate", "glitch_rate"):
            value = getattr(self, name)
            _require(_is_number(value) and 0 <= value <= 1,
                     f"{name} must be a share from 0 to 1, got {value!r}; pass e.g. 0.1.")
        total = self.error_rate + self.slow_rate + self.malformed_rate
        _require(total <= 1, f"error_rate + slow_rate + malformed_rate add up to {total:g}, more than 1; "
                             "lower them so their sum is at most 1.")
        _require(_is_number(self.slow_seconds) and self.slow_seconds >= 0,
                 f"slow_seconds must be a number of seconds from 0 up, got {self.slow_seconds!r}; pass e.g. 3.")
        _require(isinstance(self.glitch_kinds, (list, tuple)) and bool(self.glitch_kinds)
                 and all(kind in stations.GLITCH_KINDS for kind in self.glitch_kinds)
                 and len(set(self.glitch_kinds)) == len(self.glitch_kinds),
                 f"glitch_kinds must list some of {', '.join(stations.GLITCH_KINDS)}, each once, "
                 f"got {self.glitch_kinds!r}; pass e.g. [\"implausible\", \"spike\"].")
        object.__setattr__(self, "glitch_kinds", tuple(self.glitch_kinds))
        for name in ("price_request", "price_station"):
            value = getattr(self, name)
            _require(_is_number(value) and 0 <= value <= 1000,
                     f"{name} must be a price from 0 to 1000, got {value!r}; pass e.g. 0.001.")
        _require(self.billed in BILLED_FORMS,
                 f"billed must be '2xx' or 'all', got {self.billed!r}; pass one of those.")
        _require(self.retry_after in RETRY_AFTER_FORMS,
                 f"retry_after must be 'seconds' or 'http-date', got {self.retry_after!r}; pass one of those.")
        _require(_is_whole(self.seed) and self.seed >= 0,
                 f"seed must be a whole number from 0 up, got {self.seed!r}; pass e.g. 42.")
        # A JSON list arrives from /_config: kept as a tuple, so the config stays hashable.
        _require(isinstance(self.null_stations, (list, tuple))
                 and all(isinstance(station, str) for station in self.null_stations),
                 f"null_stations must be a list of station ids, got {self.null_stations!r}; "
                 'pass e.g. ["ST0007"].')
        object.__setattr__(self, "null_stations", tuple(self.null_stations))

    @classmethod
    def from_settings(cls, s: workshop_settings.Settings) -> "ApiConfig":
        return cls(
            key=s.api_key, rate=s.api_rate, burst=s.effective_api_burst, max_batch=s.api_max_batch,
            stations=s.api_stations, page_size=s.api_page_size, error_rate=s.api_error_rate,
            slow_rate=s.api_slow_rate, slow_seconds=s.api_slow_seconds,
            malformed_rate=s.api_malformed_rate, glitch_rate=s.api_glitch_rate,
            glitch_kinds=s.api_glitch_kinds, price_request=s.api_price_request,
            price_station=s.api_price_station, billed=s.api_billed,
            retry_after=s.api_retry_after, seed=s.seed,
        )

    def changed(self, changes: Mapping[str, object]) -> "ApiConfig":
        """A copy with `changes` applied; ValueError names an unknown field or a bad value."""
        known = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(known))
        _require(not unknown, f"unknown setting {', '.join(map(repr, unknown))}; "
                              f"use only these: {', '.join(known)}.")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def price_micro(self, stations_returned: int) -> int:
        """What one billed answer costs, in millionths: the request, plus each station returned."""
        return round(self.price_request * MICRO) + stations_returned * round(self.price_station * MICRO)

    def bills(self, status: int) -> bool:
        return self.billed == "all" or 200 <= status < 300


# --------------------------------------------------------------------------- rate limit

class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` per second; one request takes one.

    Not thread-safe on its own: StationsAPI calls it under its lock.
    """

    def __init__(self, rate: float, capacity: int, now: float):
        self.rate, self.capacity = rate, capacity
        self.tokens, self.updated = float(capacity), now   # starts full

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; False means: rate limited."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_until_token(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)

    def seconds_until_full(self) -> float:
        return (self.capacity - self.tokens) / self.rate

    def reconfigure(self, rate: float, capacity: int, now: float) -> None:
        """Switch to a new rate and size, keeping the tokens earned so far (capped at the new size)."""
        self._refill(now)
        self.rate, self.capacity = rate, capacity
        self.tokens = min(self.tokens, capacity)


# --------------------------------------------------------------------------- faults

def draw_fault(config: ApiConfig, request_key: tuple, attempt: int) -> tuple[str, int]:
    """The fault ("ok", "error", "slow" or "malformed") and status of one /readings request.

    `request_key` is (sorted station ids, date); `attempt` counts earlier identical requests.
    """
    kind_draw, status_draw = stations.uniforms("fault", config.seed, request_key, attempt, n=2)
    threshold = 0.0
    for kind in FAULT_KINDS:
        threshold += getattr(config, f"{kind}_rate")
        if kind_draw < threshold:
            status = ERROR_STATUSES[int(status_draw * len(ERROR_STATUSES))] if kind == "error" else 200
            return kind, status
    return "ok", 200


# --------------------------------------------------------------------------- response bodies

class Response(NamedTuple):
    status: int
    headers: dict
    body: bytes
    delay: float = 0.0   # seconds to wait before sending (a slow fault); the caller sleeps


def _json_response(status: int, payload: object, headers: dict | None = None) -> Response:
    return Response(status, {"Content-Type": JSON_TYPE, **(headers or {})}, json.dumps(payload).encode())


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    return _json_response(status, {"error": message}, headers)


@functools.lru_cache(maxsize=20_000)
def _station_json(seed: int, station: str, day: str, glitch_rate: float, kinds: tuple = DEFAULT_GLITCH_KINDS,
                  null: bool = False) -> tuple[bytes, tuple]:
    """One station's readings, JSON-encoded once, and its glitches (stations.glitches, as tuples).

    `null`: the first hour's temperature is served as null, a reading no transform
    expects (the poison-pill scenario); that hour is not logged as a glitch.
    """
    hours = stations.readings(seed, station, day, glitch_rate, kinds)
    glitches = stations.glitches(seed, station, day, glitch_rate, kinds)
    if null and hours:
        glitches = [g for g in glitches if g["hour"] != hours[0]["hour"]]
        hours[0] = {**hours[0], "temperature_c": None}
    return json.dumps(hours).encode(), tuple(tuple(g.items()) for g in glitches)


def forget_bodies() -> None:
    """Forget the stations' encoded readings (`_station_json`): the next requests pay for making them again,
    as the first ones did (a benchmark compares two runs from the same start)."""
    _station_json.cache_clear()


def _readings_body(config: ApiConfig, ids: list[str], day: str) -> tuple[bytes, list]:
    """The /readings JSON body, stitched from cached per-station parts, and the glitches it serves."""
    parts, glitches = [], []
    for station in ids:
        encoded, station_glitches = _station_json(config.seed, station, day, config.glitch_rate,
                                                  config.glitch_kinds, station in config.null_stations)
        parts.append(b'"%s": %s' % (station.encode(), encoded))
        glitches.extend(station_glitches)
    return b'{"date": "%s", "readings": {%s}}' % (day.encode(), b", ".join(parts)), glitches


def _truncated(body: bytes) -> bytes:
    """A body cut in half: what a dropped connection or a buggy proxy delivers. Never valid JSON."""
    return body[: max(1, len(body) // 2)]


# --------------------------------------------------------------------------- validation

def _is_listed(station: str, count: int) -> bool:
    digits = station[2:]
    return (station.startswith("WX") and digits.isascii() and digits.isdigit()
            and int(digits) < count and stations.station_id(int(digits)) == station)


def _parse_day(raw: str | None) -> str:
    if not raw or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ValueError(f"date {raw!r} is missing or not a date; pass date=YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError(f"date {raw!r} is not a calendar date; pass date=YYYY-MM-DD") from None


def _day_or_none(raw: str | None) -> str | None:
    try:
        return _parse_day(raw)
    except ValueError:
        return None


def _parse_station_list(raw: str | None, max_batch: int) -> list[str]:
    ids = [s.strip() for s in (raw or "").split(",") if s.strip()]
    if not ids:
        raise ValueError("no stations asked for; pass stations=WX00000,WX00001,...")
    duplicates = sorted(s for s, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"station {duplicates[0]} is asked for more than once; list each station once")
    if len(ids) > max_batch:
        raise ValueError(f"batch of {len(ids)} stations is larger than the maximum of {max_batch}; "
                         f"split it into batches of at most {max_batch}")
    return ids


def _parse_positive_int(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= high:
        raise ValueError(f"{name}={raw!r} is not valid; pass a whole number from 1 to {high}")
    return int(raw)


# --------------------------------------------------------------------------- statistics

class _Stats:
    """What the API did since the last reset. Not thread-safe on its own: used under the lock."""

    def __init__(self):
        self.requests = 0
        self.by_status: Counter = Counter()
        self.faults: Counter = Counter({kind: 0 for kind in (*FAULT_KINDS, "glitch")})
        self.fetches: Counter = Counter()
        self.fault_log: list[dict] = []
        self.by_day: dict[str, Counter] = {}       # day asked for -> answers by status (/readings only)
        self.glitch_log: dict[tuple, dict] = {}   # (station, date, hour) -> the glitch, and how often served
        self.bill = {"micro": 0, "billed_requests": 0, "by_status": Counter(), "by_day": Counter()}
        self.first_request_at: float | None = None
        self.last_request_at: float | None = None
        self.peak_in_flight = 0                    # most requests served at once (what more workers overlap)

    def record(self, status: int, fault: str = "ok", ids: list[str] | None = None, day: str | None = None,
               attempt: int = 0, glitches: list = (), cost: int | None = None) -> None:
        """One answer. `glitches`: what a 200 served (tuples of stations.glitches' items); `cost`: its
        price in millionths when it is billed, else None."""
        now = time.time()
        self.requests += 1
        self.first_request_at = self.first_request_at or now
        self.last_request_at = now
        self.by_status[str(status)] += 1
        if day is not None:
            self.by_day.setdefault(day, Counter())[str(status)] += 1
        if fault != "ok":
            self.faults[fault] += 1
            self.fault_log.append({"seq": self.requests, "kind": fault, "status": status,
                                   "stations": ids, "date": day, "attempt": attempt})
        if status == 200 and fault != "malformed" and ids:
            self.fetches.update(ids)
            self.faults["glitch"] += len(glitches)
            for glitch in glitches:
                entry = dict(glitch)
                logged = self.glitch_log.setdefault((entry["station"], entry["date"], entry["hour"]),
                                                    {**entry, "served": 0})
                logged["served"] += 1
        if cost is not None:
            self.bill["micro"] += cost
            self.bill["billed_requests"] += 1
            self.bill["by_status"][str(status)] += cost
            self.bill["by_day"][day or "listing"] += cost

    def as_dict(self, config: ApiConfig) -> dict:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "accepted": sum(n for status, n in self.by_status.items() if status.startswith("2")),
            "rate_limited": self.by_status["429"],
            "by_day": {day: dict(counts) for day, counts in self.by_day.items()},
            "faults": dict(self.faults),
            "fetches": dict(self.fetches),
            "fault_log": [dict(entry) for entry in self.fault_log],
            "glitch_log": [dict(entry) for entry in self.glitch_log.values()],
            "bill": {"currency": "USD", "total": self.bill["micro"] / MICRO, "total_micro": self.bill["micro"],
                     "billed_requests": self.bill["billed_requests"],
                     "by_status": {status: n / MICRO for status, n in self.bill["by_status"].items()},
                     "by_day": {day: n / MICRO for day, n in self.bill["by_day"].items()},
                     "prices": {"request": config.price_request, "station": config.price_station,
                                "billed": config.billed}},
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "peak_in_flight": self.peak_in_flight,
            "config": config.as_dict(),
        }


# --------------------------------------------------------------------------- the API

def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class StationsAPI:
    """The whole behaviour of the API as one method, `handle`, with no sockets involved.

    State (buckets, fault counters, stats) sits behind one lock, held only for
    bookkeeping: encoding bodies and sleeping happen outside it.
    """

    def __init__(self, config: ApiConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or ApiConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._seen: Counter = Counter()     # request key -> how many times it passed validation
        self._stats = _Stats()
        self._in_flight = 0                 # outlives a reset: requests then in flight still end

    @contextmanager
    def in_flight(self):
        """Around serving one request, answer sent included: counts the peak of requests served at once."""
        with self._lock:
            self._in_flight += 1
            self._stats.peak_in_flight = max(self._stats.peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    # -- control, also reachable over HTTP as /_stats, /_reset, /_config

    def stats(self) -> dict:
        with self._lock:
            return self._stats.as_dict(self.config)

    def reset(self, **changes) -> ApiConfig:
        """Apply `changes`, zero the stats, refill the buckets and restart the fault sequence."""
        with self._lock:   # validate inside, so two concurrent changes cannot undo each other
            config = self.config = self.config.changed(changes)
            self._buckets.clear()
            self._seen.clear()
            self._stats = _Stats()
        return config

    def configure(self, **changes) -> ApiConfig:
        """Apply `changes` and keep everything else: stats, fault sequence, tokens (capped at the new burst)."""
        with self._lock:
            config = self.config = self.config.changed(changes)
            now = self._clock()
            for bucket in self._buckets.values():
                bucket.reconfigure(config.rate, config.burst, now)
        return config

    # -- requests

    def handle(self, method: str, path: str, query: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None, body: bytes = b"") -> Response:
        """Answer one request. A slow fault comes back as `delay`: the caller sleeps, not us.

        HEAD gets the whole GET response; the HTTP layer sends it without the body.
        """
        query = query or {}
        headers = {name.lower(): value for name, value in (headers or {}).items()}
        allowed = ROUTES.get(path)
        if allowed is None:
            return self._counted(_error(404, f"no endpoint {path}; the endpoints are {', '.join(ROUTES)}"))
        if method not in allowed:
            return self._counted(_error(405, f"{path} answers {' and '.join(allowed)} only; send one of those",
                                        {"Allow": ", ".join(allowed)}))
        if path.startswith("/_"):
            return self._control(path, body)
        config = self.config   # one consistent config for the whole request
        if headers.get("x-api-key") != config.key:
            return self._counted(_error(401, "missing or wrong API key: send it in the X-API-Key header"))
        admitted, limit_headers = self._admit(config, headers["x-api-key"])
        if not admitted:   # counted (and billed) under the day it asked for, when it names one
            return self._counted(_error(
                429, f"rate limit of {_number_text(config.rate)} requests per second exceeded; "
                     "retry after the time in the Retry-After header", limit_headers), config,
                _day_or_none(query.get("date")) if path == "/readings" else None)
        if path == "/stations":
            return self._counted(self._stations(config, query, limit_headers), config)
        return self._readings(config, query, limit_headers)

    def _counted(self, response: Response, billing: ApiConfig | None = None, day: str | None = None) -> Response:
        """Count an answer; `billing`: the config whose terms bill it (a request with the right key)."""
        cost = billing.price_micro(0) if billing is not None and billing.bills(response.status) else None
        with self._lock:
            self._stats.record(response.status, day=day, cost=cost)
        return response

    def refuse(self, status: int, message: str) -> Response:
        """The error the HTTP layer answers before `handle` could run; counted under its status only."""
        return self._counted(_error(status, message))

    def _admit(self, config: ApiConfig, key: str) -> tuple[bool, dict]:
        """Take a token from the key's bucket; return whether we got one and the headers to send."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.setdefault(key, TokenBucket(config.rate, config.burst, now))
            admitted = bucket.take(now)
            headers = {
                "X-RateLimit-Limit": _number_text(bucket.rate),
                "X-RateLimit-Remaining": str(int(bucket.tokens)),
                "X-RateLimit-Reset": str(math.ceil(bucket.seconds_until_full())),
            }
            wait = max(1, math.ceil(bucket.seconds_until_token()))
        if not admitted:
            headers["Retry-After"] = self._retry_after(config, wait)
        return admitted, headers

    @staticmethod
    def _retry_after(config: ApiConfig, wait: int) -> str:
        """Retry-After per RFC 9110: delay-seconds, or an HTTP-date at least `wait` seconds ahead."""
        if config.retry_after == "http-date":
            # formatdate drops the fraction of a second, so round the moment up.
            return email.utils.formatdate(math.ceil(time.time()) + wait, usegmt=True)
        return str(wait)

    def _stations(self, config: ApiConfig, query: Mapping[str, str], headers: dict) -> Response:
        try:
            page = _parse_positive_int(query, "page", 1, sys.maxsize)
            per_page = _parse_positive_int(query, "per_page", config.page_size, MAX_PER_PAGE)
        except ValueError as why:
            return _error(400, str(why), headers)
        start = min((page - 1) * per_page, config.stations)
        ids = stations.station_ids(min(per_page, config.stations - start), start)
        has_more = start + per_page < config.stations
        return _json_response(200, {"stations": ids, "page": page, "per_page": per_page,
                                    "total": config.stations, "next_page": page + 1 if has_more else None},
                              headers)

    def _readings(self, config: ApiConfig, query: Mapping[str, str], headers: dict) -> Response:
        try:
            ids = _parse_station_list(query.get("stations"), config.max_batch)
            day = _parse_day(query.get("date"))
        except ValueError as why:
            return self._counted(_error(400, str(why), headers), config)
        unknown = [s for s in ids if not _is_listed(s, config.stations)]
        if unknown:
            return self._counted(_error(
                404, f"unknown station {unknown[0]}: it is not in the listing; GET /stations lists the "
                     f"{config.stations} stations", headers), config)
        request_key = (tuple(sorted(ids)), day)
        with self._lock:
            attempt = self._seen[request_key]
            self._seen[request_key] += 1
        fault, status = draw_fault(config, request_key, attempt)
        response, glitches = self._faulty_readings(config, ids, day, fault, status, headers)
        # Billed as served: a slow or malformed 200 returned its stations, as far as the API knows.
        cost = (config.price_micro(len(ids) if response.status == 200 else 0)
                if config.bills(response.status) else None)
        with self._lock:
            self._stats.record(response.status, fault, ids, day, attempt, glitches, cost)
        return response

    @staticmethod
    def _faulty_readings(config: ApiConfig, ids: list[str], day: str, fault: str, status: int,
                         headers: dict) -> tuple[Response, list]:
        """The readings response as the drawn fault shapes it, and the glitches it serves."""
        if fault == "error":
            return _error(status, f"injected fault: the upstream failed with {status}; retry later", headers), []
        body, glitches = _readings_body(config, ids, day)
        headers = {"Content-Type": JSON_TYPE, **headers}
        if fault == "malformed":
            return Response(200, headers, _truncated(body)), []
        return Response(200, headers, body, config.slow_seconds if fault == "slow" else 0.0), glitches

    def _control(self, path: str, body: bytes) -> Response:
        """The unauthenticated, uncounted endpoints tests and instructors use."""
        routes = {"/_health": lambda: {"ok": True},
                  "/_stats": self.stats,
                  "/_reset": lambda: self.reset(**self._changes(body)).as_dict(),
                  "/_config": lambda: self.configure(**self._changes(body)).as_dict()}
        try:
            return _json_response(200, routes[path]())
        except ValueError as why:
            return _error(400, str(why))

    @staticmethod
    def _changes(body: bytes) -> dict:
        if not body.strip():
            return {}
        try:
            changes = json.loads(body)
        except ValueError:
            raise ValueError("the body is not JSON; send an object such as {\"rate\": 5}") from None
        _require(isinstance(changes, dict), "the body must be a JSON object such as {\"rate\": 5}.")
        return changes


# --------------------------------------------------------------------------- HTTP

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive: clients reuse one connection
    default_request_version = "HTTP/1.0"   # a malformed request line still gets a status line and headers
    disable_nagle_algorithm = True    # small responses go out at once, not after 40 ms
    timeout = 60                      # drop a keep-alive connection idle this long
    _refused = False                  # set once the HTTP layer refused the request: linger, then close

    def __getattr__(self, name: str):
        # http.server dispatches to do_<METHOD> and answers an HTML 501 when there is none:
        # send every method, known or not, to the API, which answers 405 and Allow instead.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        try:
            url = urlsplit(self.path)
        except ValueError:   # e.g. an absolute URL with a broken [IPv6] host
            return self._refuse(400, "the request target is not a valid URL; send a path such as /stations")
        length = self._body_length()
        if length is None:
            return
        query = {name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        body = self.rfile.read(length)
        api = self.server.api
        if url.path.startswith("/_"):   # control calls (e.g. a test reading /_stats) are not the load
            return self._send(api.handle(self.command, url.path, query, self.headers, body))
        with api.in_flight():
            self._send(api.handle(self.command, url.path, query, self.headers, body))

    def _body_length(self) -> int | None:
        """The declared body length, or None after refusing the body (400, 411, 413) unread."""
        if "Transfer-Encoding" in self.headers:
            self._refuse(411, "chunked bodies are not accepted; send the body with a Content-Length")
            return None
        # Two Content-Length headers join into something that is not a whole number: refused.
        digits = ", ".join(self.headers.get_all("Content-Length", [])).strip() or "0"
        if not (digits.isascii() and digits.isdigit()):
            self._refuse(400, "Content-Length is not a whole number of bytes; send the body's size in bytes")
            return None
        # Compare lengths before int(): a 60 KB number would not even convert.
        if len(digits.lstrip("0")) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
            self._refuse(413, f"the body is larger than the maximum of {MAX_BODY_BYTES} bytes; "
                              f"send at most {MAX_BODY_BYTES} bytes")
            return None
        return int(digits)

    def handle_expect_100(self):
        # Refuse a body we would not read before the client sends it, not after a 100 Continue.
        return self._body_length() is not None and super().handle_expect_100()

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (400, 414, 431, 505), as the API's JSON errors, counted."""
        hints = {
            400: "the request line is malformed; send METHOD /path HTTP/1.1",
            414: f"the request line is longer than 64 KiB; ask for at most "
                 f"{self.server.api.config.max_batch} stations per request",
            431: "the request headers are too many or too long; send at most 100 headers under 64 KiB each",
            505: "this HTTP version is not served; send HTTP/1.1",
        }
        self._refuse(code, hints.get(code, message or HTTPStatus(code).phrase))

    def _refuse(self, status: int, message: str) -> None:
        # What follows the refused part of the request cannot be parsed: close after answering.
        self._refused = self.close_connection = True
        self._send(self.server.api.refuse(status, message))

    def _send(self, response: Response) -> None:
        if response.delay:
            time.sleep(response.delay)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":    # HEAD: GET's status and headers, no body (RFC 9110 9.3.2)
            self.wfile.write(response.body)

    def finish(self):
        super().finish()
        if self._refused:
            self._linger()

    def _linger(self) -> None:
        """Discard what the client still sends (bounded) before closing, as RFC 9112 9.6 advises:
        closing with unread input resets the connection, which can destroy our unread answer."""
        deadline, discarded = time.monotonic() + LINGER_SECONDS, 0
        try:
            self.connection.shutdown(socket.SHUT_WR)   # the answer is complete: the client sees EOF
            while discarded < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:   # timed out, or the client is gone: close anyway
            pass

    def log_message(self, format, *args):
        pass   # one line per request would cost more than the request


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, api: StationsAPI):
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):
        # A client that timed out on a slow response and hung up is normal here, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ApiServer:
    """The API on a real port, served from a daemon thread: `with ApiServer(config) as api: api.url`."""

    def __init__(self, config: ApiConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.api = StationsAPI(config)
        self._httpd = _HTTPServer((host, port), self.api)   # binds now, so .url is known at once
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def config(self) -> ApiConfig:
        return self.api.config

    def start(self) -> "ApiServer":
        # A short poll interval makes stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stations-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI's way)."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def stats(self) -> dict:
        return self.api.stats()

    def reset(self, **changes) -> ApiConfig:
        return self.api.reset(**changes)

    def configure(self, **changes) -> ApiConfig:
        return self.api.configure(**changes)

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- command line

class _CliError(Exception):
    """A bad command-line value; its message is the one sentence the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One sentence, no usage block: the user knows the command, not the value.
        raise _CliError(f"{message}; see python -m workshop api --help.")


def _parser(s: workshop_settings.Settings) -> argparse.ArgumentParser:
    p = _Parser(prog="python -m workshop api", description="Serve the fake Stations API until Ctrl-C.")
    p.add_argument("--host", default=s.api_host)
    p.add_argument("--port", type=int, default=s.api_port, help="0 picks a free port")
    p.add_argument("--key", default=s.api_key)
    p.add_argument("--rate", type=float, default=s.api_rate, help="requests per second per key")
    p.add_argument("--burst", type=int, default=None, help="bucket size (default: from settings, or the rate rounded up)")
    p.add_argument("--max-batch", type=int, default=s.api_max_batch)
    p.add_argument("--stations", type=int, default=s.api_stations)
    p.add_argument("--page-size", type=int, default=s.api_page_size)
    p.add_argument("--error-rate", type=float, default=s.api_error_rate)
    p.add_argument("--slow-rate", type=float, default=s.api_slow_rate)
    p.add_argument("--slow-seconds", type=float, default=s.api_slow_seconds)
    p.add_argument("--malformed-rate", type=float, default=s.api_malformed_rate)
    p.add_argument("--glitch-rate", type=float, default=s.api_glitch_rate)
    p.add_argument("--glitch-kinds", default=",".join(s.api_glitch_kinds),
                   help=f"comma-separated, of {','.join(stations.GLITCH_KINDS)}")
    p.add_argument("--price-request", type=float, default=s.api_price_request)
    p.add_argument("--price-station", type=float, default=s.api_price_station)
    p.add_argument("--billed", choices=BILLED_FORMS, default=s.api_billed)
    p.add_argument("--retry-after", choices=RETRY_AFTER_FORMS, default=s.api_retry_after)
    p.add_argument("--seed", type=int, default=s.seed)
    return p


def _config_from_args(args: argparse.Namespace, s: workshop_settings.Settings) -> ApiConfig:
    # Without --burst: API_BURST if set, else one second's worth of the (possibly new) rate.
    burst = args.burst if args.burst is not None else (s.api_burst or max(1, math.ceil(args.rate)))
    return ApiConfig(key=args.key, rate=args.rate, burst=burst, max_batch=args.max_batch,
                     stations=args.stations, page_size=args.page_size, error_rate=args.error_rate,
                     slow_rate=args.slow_rate, slow_seconds=args.slow_seconds,
                     malformed_rate=args.malformed_rate, glitch_rate=args.glitch_rate,
                     glitch_kinds=tuple(kind.strip() for kind in args.glitch_kinds.split(",") if kind.strip()),
                     price_request=args.price_request, price_station=args.price_station, billed=args.billed,
                     retry_after=args.retry_after, seed=args.seed)


def describe(config: ApiConfig, url: str) -> str:
    return (f"Stations API on {url}: rate {_number_text(config.rate)}/s, burst {config.burst}, "
            f"{config.stations} stations, max batch {config.max_batch}, "
            f"faults error {config.error_rate:g} slow {config.slow_rate:g} ({config.slow_seconds:g} s) "
            f"malformed {config.malformed_rate:g} glitch {config.glitch_rate:g} ({','.join(config.glitch_kinds)}), "
            f"price {config.price_request:g} per request + {config.price_station:g} per station "
            f"({config.billed} billed), seed {config.seed}, "
            f"key {config.key!r}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m workshop api [options]`: serve until Ctrl-C. Bad values: one sentence, exit 2."""
    try:
        s = workshop_settings.load()
        args = _parser(s).parse_args(argv)
        if not 0 <= args.port <= 65535:
            raise _CliError(f"--port {args.port} is not a port; pass 0 to 65535 (0 picks a free one).")
        config = _config_from_args(args, s)
        server = ApiServer(config, args.host, args.port)
    except (_CliError, workshop_settings.SettingsError, ValueError) as why:
        print(f"error: {why}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as why:
        print(f"error: cannot listen on {args.host}:{args.port} ({why.strerror or why}); "
              "pick another --host or --port.", file=sys.stderr)
        raise SystemExit(2) from None
    print(describe(config, server.url), flush=True)
    if threading.current_thread() is threading.main_thread():
        # In a container the server is PID 1, which ignores SIGTERM unless it handles it.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stations API stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
