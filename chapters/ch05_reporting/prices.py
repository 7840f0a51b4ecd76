# Exercise copy of solutions/ch05_reporting/prices.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The API's published price list, as the pipeline knows it (API_PRICE_REQUEST, API_PRICE_STATION,
API_BILLED), and what follows from it: what one call may cost, which batch size is cheapest, what
finishing a day would cost.

Money is counted in whole millionths of the currency ("micro"), as the API's bill does: sums of
prices stay exact, and an atomic Redis INCRBY can add them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from workshop import settings as settings_mod

MICRO = 1_000_000


def to_micro(amount: float) -> int:
    return round(amount * MICRO)


def money(micro: int | float) -> str:
    """$0.0123: four decimals, as much as a price list shows."""
    return f"${micro / MICRO:,.4f}"


@dataclass(frozen=True)
class Prices:
    request: int     # micro, per billed request
    station: int     # micro, per station a billed answer returned
    billed: str      # "2xx": only successful answers are billed; "all": 429s and 5xx too

    @classmethod
    def published(cls, settings: settings_mod.Settings | None = None) -> "Prices":
        s = settings or settings_mod.load()
        return cls(to_micro(s.api_price_request), to_micro(s.api_price_station), s.api_billed)

    def call(self, stations: int) -> int:
        """The most one call for `stations` stations can be billed: what a budget reserves before it."""
        return self.request + stations * self.station

    def billed_for(self, status: int, stations: int) -> int:
        """What the terms bill for an answer with `status`: a 200 its request and stations; another
        answer nothing, or (billed="all") its request."""
        if status == 200:
            return self.call(stations)
        return self.request if self.billed == "all" else 0

    def per_station(self, batch: int) -> float:
        """Micro per station fetched, at `batch` stations a request, when every call succeeds."""
        return self.station + self.request / batch

    def cheapest_batch(self, max_batch: int) -> int:
        """The batch size with the lowest price per station: the request price is shared by the batch,
        so the largest the API takes (any size, when requests are free)."""
        return min(range(1, max_batch + 1), key=lambda batch: (self.per_station(batch), -batch))

    def to_finish(self, stations: int, batch: int) -> int:
        """What fetching `stations` more would cost in `batch`-sized calls, if none failed."""
        return math.ceil(stations / batch) * self.request + stations * self.station if stations else 0
