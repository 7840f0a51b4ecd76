# Exercise copy of solutions/ch01_periodic/stations_api.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""A plain client for the Stations API: what a team writes on day one.

No retries, no rate limiting: a 429 or a 5xx raises. Later chapters wrap these
calls; they do not change them.
"""
from __future__ import annotations

import os
import threading

import requests

from workshop import settings as settings_mod

_local = threading.local()


def session(base_url: str) -> requests.Session:
    """This thread's keep-alive session for `base_url`: one TCP connection reused, not one per request.

    Per thread (a Session is not thread-safe) and per process: a pool process forked
    from a parent that had one makes its own, as sockets do not survive a fork. The
    environment (proxies, a CA bundle) is read once, here: requests would read all of
    it again on every request, a tenth of what a one-station batch costs in Python.
    """
    key = (os.getpid(), base_url)
    if getattr(_local, "key", None) != key:
        fresh = requests.Session()
        fresh.proxies = requests.utils.get_environ_proxies(base_url)
        fresh.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        fresh.trust_env = False
        _local.session, _local.key = fresh, key
    return _local.session


def _get(path: str, params: dict, settings: settings_mod.Settings | None = None) -> requests.Response:
    s = settings or settings_mod.load()
    response = session(s.effective_api_url).get(f"{s.effective_api_url}{path}", params=params,
                             headers={"X-API-Key": s.api_key}, timeout=s.request_timeout)
    response.raise_for_status()
    return response


def list_stations(settings: settings_mod.Settings | None = None) -> list[str]:
    """Every station id, page by page."""
    ids, page = [], 1
    while page:
        body = _get("/stations", {"page": page, "per_page": 1000}, settings).json()
        ids.extend(body["stations"])
        page = body["next_page"]
    return ids


def fetch_readings(stations: list[str], day: str, settings: settings_mod.Settings | None = None) -> dict:
    """{station: [24 hourly readings]} for up to the API's maximum batch of stations."""
    body = _get("/readings", {"stations": ",".join(stations), "date": day}, settings).json()
    return body["readings"]
