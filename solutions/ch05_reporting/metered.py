"""The API call of a run: paid for from its budget, and recorded.

    reserve the most the call can cost ── does not fit ──> BudgetSpent (the batch goes back, uncounted)
         │ fits: the call is on the run's record from now
    call the API (chapter 4's client)
         │
    settle: give back what the terms did not bill; count the call for the run (budget.settle)

One call id ties the two (each is safe sent twice). The figures of a run's report
come from here: what the pipeline itself saw and paid, call by call. The report
then holds them against the API's own bill. A worker that dies between the API's
answer and the settlement leaves the call on record as reserved: "answer lost".
"""
from __future__ import annotations

import time
from typing import Callable

import requests

from ch04_rate_limits import client
from ch04_rate_limits.fetch import GiveBack
from workshop import settings as settings_mod
from workshop.celery_app import redis_client

from . import budget, prices


class BudgetSpent(GiveBack):
    """The run's budget cannot pay for the next call: its stations stay pending for a later run."""


def _status_of(error: Exception) -> int | None:
    """The HTTP status the API answered with, or None when no answer arrived (a timeout, a reset)."""
    if isinstance(error, client.RateLimited):
        return 429
    if isinstance(error, (client.MalformedBody, requests.exceptions.JSONDecodeError)):
        return 200   # an answer whose body is broken is still an answer, and billed as one
    response = getattr(error, "response", None)
    return response.status_code if response is not None else None


def call_for(run: str | None) -> Callable[..., dict]:
    """client.fetch(batch, day, settings), paid for from `run`'s budget and counted for it."""
    def call(batch: list[str], day: str, settings: settings_mod.Settings | None = None) -> dict:
        s = settings or settings_mod.load()
        if run is None:   # a batch sent by hand, not by a run: nothing to pay from, nothing to count
            return client.fetch(batch, day, s)
        r, price = redis_client(), prices.Prices.published(s)
        most, call_id = price.call(len(batch)), budget.new_call()
        if not budget.reserve(r, run, most, call_id):
            raise BudgetSpent(f"run {run}: the next call ({prices.money(most)}) would overspend its budget")
        started = time.monotonic()
        try:
            readings = client.fetch(batch, day, s)
        except Exception as error:
            status = _status_of(error)
            billed = most if status is None else price.billed_for(status, len(batch))
            budget.settle(r, run, call_id, batch, status, billed, time.monotonic() - started)
            raise
        budget.settle(r, run, call_id, batch, 200, most, time.monotonic() - started)
        return readings
    return call
