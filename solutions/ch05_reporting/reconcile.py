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


def differences(recorded: dict, api: dict | None) -> list[dict]:
    """One finding per figure that differs: {figure, ours, api, difference, why}; [] when all agree."""
    if api is None:
        return [{"figure": "all", "ours": None, "api": None, "difference": None,
                 "why": "the API publishes no statistics (no /_stats): nothing to reconcile against"}]
    # >>> exercise 5.4: a finding for each figure in FIGURES whose recorded and API values differ (difference = ours - api), with a `why`: calls without an answer explain a cost we kept above the bill; a bill above our cost for the same requests means our price list is not the API's terms; more on the API's side than ours means calls we did not record (another client, a run not reported yet); less means it was reset or restarted since
    found = []
    for figure in FIGURES:
        difference = recorded[figure] - api[figure]
        if difference == 0:
            continue
        if figure == "cost_micro" and difference > 0 and recorded["no_answer"]:
            why = (f"{recorded['no_answer']} calls got no answer: we kept what they reserved, "
                   "the API billed what it served")
        elif figure == "cost_micro" and difference < 0 and recorded["requests"] == api["requests"]:
            why = ("the API billed more for the same calls than our price list says: check API_PRICE_REQUEST, "
                   "API_PRICE_STATION and API_BILLED against its published terms")
        elif difference > 0 and recorded.get("answer_lost"):
            why = (f"{recorded['answer_lost']} calls were reserved and never settled (their worker died): we count "
                   "them as billed, answer lost; some may not have reached the API")
        elif difference < 0:
            why = "the API counted calls we did not record: another client, or a run not reported yet"
        else:
            why = "the API counted less than we recorded: it was reset or restarted since"
        found.append({"figure": figure, "ours": recorded[figure], "api": api[figure], "difference": difference,
                      "why": why})
    return found
    # <<<
