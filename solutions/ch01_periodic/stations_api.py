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


def session() -> requests.Session:
    """This thread's keep-alive session: one TCP connection reused, not one opened per request.

    Per thread (a Session is not thread-safe) and per process: a pool process forked
    from a parent that had one makes its own, as sockets do not survive a fork.
    """
    if getattr(_local, "pid", None) != os.getpid():
        _local.session, _local.pid = requests.Session(), os.getpid()
    return _local.session


def _get(path: str, params: dict, settings: settings_mod.Settings | None = None) -> requests.Response:
    s = settings or settings_mod.load()
    response = session().get(f"{s.effective_api_url}{path}", params=params,
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
