# Exercise copy of solutions/ch05_reporting/reconcile.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""What we recorded against what the API says: its own counts (/_stats) and its bill.

Both sides are totals for a day (the API counts per day asked for, not per run):
ours, the day's runs added up; theirs, the API's `by_day` counts and bill. Equal
figures are reconciled; a difference is a finding, with the likely cause, never
hidden: a call that got no answer (a timeout) was counted by the API and kept its
reservation with us; an API restarted or reset since the runs lost its counts.
"""
from __future__ import annotations

import requests

from workshop import settings as settings_mod

FIGURES = ("requests", "rate_limited", "server_errors", "cost_micro")


def api_day(day: str, settings: settings_mod.Settings | None = None) -> dict | None:
    """The API's own figures for `day`, or None when it has no /_stats (a real API)."""
    s = settings or settings_mod.load()
    try:
        response = requests.get(f"{s.effective_api_url}/_stats", timeout=5)
        response.raise_for_status()
        stats = response.json()
    except (requests.RequestException, ValueError):
        return None
    counts = {status: int(n) for status, n in stats.get("by_day", {}).get(day, {}).items()}
    return {"requests": sum(counts.values()), "rate_limited": counts.get("429", 0),
            "server_errors": sum(n for status, n in counts.items() if status.startswith("5")),
            "cost_micro": round(stats.get("bill", {}).get("by_day", {}).get(day, 0) * 1_000_000)}


def ours(rows: list[dict]) -> dict:
    """The day's figures as our runs recorded them, added up."""
    return {"requests": sum(r["api_requests"] for r in rows), "rate_limited": sum(r["rate_limited"] for r in rows),
            "server_errors": sum(r["server_errors"] for r in rows), "cost_micro": sum(r["cost_micro"] for r in rows),
            "no_answer": sum(r["no_answer"] for r in rows), "answer_lost": sum(r.get("answer_lost") or 0 for r in rows)}


# Why a figure differs, by cause: a finding carries both, the code for a program, the sentence for a reader.
WHY = {
    "no_stats": "the API publishes no statistics (no /_stats): nothing to reconcile against",
    "no_answer": "{no_answer} calls got no answer: we kept what they reserved, the API billed what it served",
    "price_list": ("the API billed more for the same calls than our price list says: check API_PRICE_REQUEST, "
                   "API_PRICE_STATION and API_BILLED against its published terms"),
    "answer_lost": ("{answer_lost} calls were reserved and never settled (their worker died): we count them as "
                    "billed, answer lost; some may not have reached the API"),
    "not_recorded": "the API counted calls we did not record: another client, or a run not reported yet",
    "reset": "the API counted less than we recorded: it was reset or restarted since",
}


def finding(figure: str, recorded: dict, api: dict, cause: str) -> dict:
    """One difference: {figure, ours, api, difference (ours - api), cause (a key of WHY), why (its sentence)}."""
    return {"figure": figure, "ours": recorded[figure], "api": api[figure],
            "difference": recorded[figure] - api[figure], "cause": cause, "why": WHY[cause].format(**recorded)}


def differences(recorded: dict, api: dict | None) -> list[dict]:
    """One finding per figure that differs (see `finding`), with its likely cause; [] when all agree."""
    if api is None:
        return [{"figure": "all", "ours": None, "api": None, "difference": None, "cause": "no_stats",
                 "why": WHY["no_stats"]}]
    # exercise 5.4: a finding(figure, recorded, api, cause) for each figure in FIGURES whose two values differ; its cause, the first that fits: "no_answer" (cost above the bill, and calls without an answer), "price_list" (cost below the bill for as many requests as the API counted), "answer_lost" (ours above, and calls whose answer was lost), "not_recorded" (any other figure where ours is below), "reset" (any other where ours is above)
    raise NotImplementedError('exercise 5.4: a finding(figure, recorded, api, cause) for each figure in FIGURES whose two values differ; its cause, the first that fits: "no_answer" (cost above the bill, and calls without an answer), "price_list" (cost below the bill for as many requests as the API counted), "answer_lost" (ours above, and calls whose answer was lost), "not_recorded" (any other figure where ours is below), "reset" (any other where ours is above)')
