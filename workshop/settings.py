"""Every knob of the workshop, read from environment variables with typed defaults.

A bad value stops the program at start with one sentence that names the
variable, what it got, and what is allowed; nothing deep inside a library ever
sees it.
"""
from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple


class SettingsError(ValueError):
    """A setting has a value the workshop cannot use; the message says how to fix it."""


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("a non-empty text")
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        raw = raw.strip()
        if not any(raw.startswith(s + "://") for s in schemes):
            raise ValueError("a URL starting with " + " or ".join(s + "://" for s in schemes))
        return raw
    return parse


def _optional_url(*schemes: str) -> Callable[[str], str | None]:
    strict = _url(*schemes)
    return lambda raw: strict(raw) if raw.strip() else None


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    allowed = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(allowed) from None
        if value < low or (high is not None and value > high):
            raise ValueError(allowed)
        return value
    return parse


def _float(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    allowed = (f"a number {'above' if low_open else 'from'} {low:g}"
               + (f" to {high:g}" if high is not None else ""))

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(allowed) from None
        if value != value or value < low or (low_open and value == low) or (high is not None and value > high):
            raise ValueError(allowed)
        return value
    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("one of " + ", ".join(options))
        return value
    return parse


def _date(raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError("a date as YYYY-MM-DD") from None


RATE = _float(0.0, 1.0)
GLITCH_KINDS = ("implausible", "spike", "gap")   # workshop.stations.GLITCH_KINDS (not imported: settings import nothing)


def _kinds(raw: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in raw.split(",") if kind.strip())
    if not kinds or any(kind not in GLITCH_KINDS for kind in kinds) or len(set(kinds)) < len(kinds):
        raise ValueError(f"some of {', '.join(GLITCH_KINDS)}, comma-separated, each once")
    return kinds


class RedisFaults(NamedTuple):
    """REDIS_FAULTS parsed: the share of the pipeline client's commands whose reply is lost, and the seed."""

    lost_reply: float
    seed: int


REDIS_FAULTS_FORM = "lost-reply:<share from 0 to 1>,seed:<whole number>, e.g. lost-reply:0.05,seed:7"


def _redis_faults(raw: str) -> RedisFaults | None:
    if not raw.strip():
        return None
    items = {}
    for item in raw.split(","):
        name, colon, value = item.strip().partition(":")
        if not colon or name not in ("lost-reply", "seed") or name in items:
            raise ValueError(REDIS_FAULTS_FORM)
        items[name] = value
    if set(items) != {"lost-reply", "seed"}:
        raise ValueError(REDIS_FAULTS_FORM)
    try:
        faults = RedisFaults(float(items["lost-reply"]), int(items["seed"]))
    except ValueError:
        raise ValueError(REDIS_FAULTS_FORM) from None
    if not 0.0 <= faults.lost_reply <= 1.0 or faults.seed < 0:
        raise ValueError(REDIS_FAULTS_FORM)
    return faults


STATE_REDIS_FORMS = ("a plain Redis as redis://host:port/0 (or rediss://, unix://), or a Redis Cluster as "
                     "redis+cluster://host:port,host:port (some of its nodes, comma-separated)")


def _state_redis_url(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith(CLUSTER_SCHEME + "://"):
        if cluster_nodes(raw):
            return raw
    elif any(raw.startswith(s + "://") for s in ("redis", "rediss", "unix")):
        return raw
    raise ValueError(STATE_REDIS_FORMS)


CLUSTER_SCHEME = "redis+cluster"


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a redis+cluster:// URL; [] when it has none or one is not host:port."""
    nodes = []
    for node in url.partition("://")[2].strip("/").split(","):
        host, colon, port = node.strip().rpartition(":")
        if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
            return []
        nodes.append((host, int(port)))
    return nodes


@dataclass(frozen=True)
class Settings:
    """The workshop's configuration. Field NAME is read from the variable NAME in upper case."""

    # Redis: REDIS_URL wins; otherwise a container of REDIS_IMAGE; otherwise redis-server on PATH.
    redis_url: str | None = None
    redis_image: str = "redis:7-alpine"
    # The pipeline's state (its sets, loop, leases, runs) on a Redis of its own, e.g. a Redis Cluster
    # (redis+cluster://host:port,host:port,...); Celery's broker and results stay on REDIS_URL. Unset: REDIS_URL.
    state_redis_url: str | None = None
    # Off unless set: the pipeline's client loses a seeded share of replies, so redis-py sends those
    # commands again (workshop/redis_faults.py; `make test-faults`).
    redis_faults: RedisFaults | None = None
    # The fake Stations API, as a server (api_*) and as the pipelines see it (api_url, api_key).
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    api_url: str | None = None        # default: http://{api_host}:{api_port}
    api_key: str = "workshop-key"
    api_rate: float = 20.0            # requests per second per API key (token bucket refill)
    api_burst: int | None = None      # bucket size; default: the rate rounded up (one second of burst)
    api_max_batch: int = 50           # most stations one readings request may ask for
    api_stations: int = 2000          # how many stations the API lists
    api_page_size: int = 100          # default page size of the station listing
    api_error_rate: float = 0.0       # share of requests answered with a 5xx
    api_slow_rate: float = 0.0        # share of requests answered only after api_slow_seconds
    api_slow_seconds: float = 3.0     # how long a slow response takes (past the client's timeout)
    api_malformed_rate: float = 0.0   # share of 200 responses whose body is not valid JSON
    api_glitch_rate: float = 0.0      # share of hourly readings that are implausible sensor glitches
    api_glitch_kinds: tuple = ("implausible",)  # glitch kinds drawn: implausible, spike, gap (comma-separated)
    api_price_request: float = 0.001  # the API's published price per billed request (USD)...
    api_price_station: float = 0.0002  # ...plus this per station a billed answer returned
    api_billed: str = "2xx"           # which answers are billed: "2xx" (successes only) or "all"
    api_retry_after: str = "seconds"  # form of Retry-After on 429: "seconds" or "http-date"
    seed: int = 42                    # seeds the data set and the fault profile
    # The pipelines' side.
    day: dt.date = dt.date(2026, 1, 15)   # the day whose readings the pipelines summarise
    batch_size: int = 10              # stations per readings request a pipeline makes
    request_timeout: float = 2.0      # seconds a pipeline waits for one API response
    beat_interval: float = 5.0        # seconds between two runs of a beat-scheduled pipeline
    slice_size: int = 50              # stations one periodic run takes from the cursor
    demo_stations: int = 200          # how many stations `make demo` processes
    run_budget: float | None = None   # most a run may spend on the API (USD, chapter 5); unset: no budget
    workshop_target: str = "solutions"  # which tree tests and notebooks import: solutions or chapters
    flower_url: str = "http://127.0.0.1:5555"  # the compose stack's Flower (chapter 6); inside the stack http://flower:5555

    @property
    def effective_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def effective_api_burst(self) -> int:
        if self.api_burst is not None:
            return self.api_burst
        return max(1, int(-(-self.api_rate // 1)))


_PARSERS: dict[str, Callable[[str], object]] = {
    "redis_url": _optional_url("redis", "rediss", "unix"),
    "redis_image": _text,
    "state_redis_url": _state_redis_url,
    "redis_faults": _redis_faults,
    "api_host": _text,
    "api_port": _int(1, 65535),
    "api_url": _optional_url("http", "https"),
    "api_key": _text,
    "api_rate": _float(0.0, low_open=True),
    "api_burst": lambda raw: _int(1)(raw) if raw.strip() else None,
    "api_max_batch": _int(1, 1000),
    "api_stations": _int(1, 1_000_000),
    "api_page_size": _int(1, 1000),
    "api_error_rate": RATE,
    "api_slow_rate": RATE,
    "api_slow_seconds": _float(0.0),
    "api_malformed_rate": RATE,
    "api_glitch_rate": RATE,
    "api_glitch_kinds": _kinds,
    "api_price_request": _float(0.0, 1000.0),
    "api_price_station": _float(0.0, 1000.0),
    "api_billed": _choice("2xx", "all"),
    "api_retry_after": _choice("seconds", "http-date"),
    "seed": _int(0),
    "day": _date,
    "batch_size": _int(1, 1000),
    "request_timeout": _float(0.0, low_open=True),
    "beat_interval": _float(0.0, low_open=True),
    "slice_size": _int(1, 1_000_000),
    "demo_stations": _int(1, 1_000_000),
    "run_budget": lambda raw: _float(0.0)(raw) if raw.strip() else None,
    "workshop_target": _choice("solutions", "chapters"),
    "flower_url": _url("http", "https"),
}
assert set(_PARSERS) == {f.name for f in fields(Settings)}


def parse_value(name: str, raw: str):
    """Parse one setting given by field name; raise SettingsError with the fix in one sentence."""
    try:
        return _PARSERS[name](raw)
    except ValueError as why:
        default = getattr(Settings, name, None)
        hint = f"unset it to use the default {default}" if default is not None else "unset it"
        raise SettingsError(
            f"{name.upper()}={raw!r} is not valid: expected {why}; set it to such a value or {hint}."
        ) from None


_VARIABLES = tuple(f.name.upper() for f in fields(Settings))
_LOADED: dict[tuple, Settings] = {}   # the environment's raw values -> their Settings (frozen: shareable)


def load(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Read the settings from `environ` (default: os.environ); keyword overrides win, unparsed.

    Read at call time, so a changed variable takes effect at once; parsed once per set of
    values (a loop turn asks several times, and parsing is most of what a turn costs in Python).
    """
    if environ is None and not overrides:
        raw = tuple(map(os.environ.get, _VARIABLES))
        if raw not in _LOADED:
            if len(_LOADED) > 64:   # a test that sets many variables one after the other: keep it small
                _LOADED.clear()
            _LOADED[raw] = load(os.environ)
        return _LOADED[raw]
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(Settings):
        raw = environ.get(f.name.upper())
        if raw is not None:
            values[f.name] = parse_value(f.name, raw)
    values.update(overrides)
    settings = Settings(**values)
    total_faults = settings.api_error_rate + settings.api_slow_rate + settings.api_malformed_rate
    if total_faults > 1.0:
        raise SettingsError(
            f"API_ERROR_RATE + API_SLOW_RATE + API_MALFORMED_RATE add up to {total_faults:g}, "
            "more than 1; lower them so their sum is at most 1."
        )
    return settings


@contextmanager
def environment(values: Mapping[str, str] | None = None, restore: Iterable[str] = ()) -> Iterator[None]:
    """Set `values` in this process's environment for the block (a measurement that points its workers
    somewhere); afterwards they, and every name in `restore` (set inside the block), are as they were."""
    values = dict(values or {})
    saved = {name: os.environ.get(name) for name in {*values, *restore}}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
