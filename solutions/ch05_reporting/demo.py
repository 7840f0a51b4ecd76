"""`make demo`: chapter 5's story in one day: a run that runs out of budget, a second that finishes it.

The kit brings Redis, the fake API (with sensor glitches: ENVIRONMENT) and an embedded
worker for `app` (which loads the report pipeline with the app's `include`). `run` runs
the day twice: first with a budget for about half of it (RUN_BUDGET, if set, instead),
which stops at "budget spent", then with none, which finishes what was left; each run is
reported. `story(stats)` tells it in one table, every figure from one source per side:
what our runs recorded, held against the API's own count and bill for the day (/_stats).
"""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import redis

from workshop import settings as settings_mod

from . import pipeline, prices, quality, reporting
from .app import app
from .prices import money

__all__ = ["app", "run", "story", "ENVIRONMENT"]

# The demo's API serves sensor glitches of every kind, so the quality rules have something to find; the
# answer key knows them through the same settings. A value you set yourself wins.
ENVIRONMENT = {"API_GLITCH_RATE": "0.02", "API_GLITCH_KINDS": "implausible,spike,gap"}

_last: dict = {}


def first_budget(settings: settings_mod.Settings) -> float:
    """RUN_BUDGET if set, else what the first half of the day's calls cost: the first run stops halfway."""
    if settings.run_budget is not None:
        return settings.run_budget
    price, batch = prices.Prices.published(settings), pipeline.batch_size()
    half = math.ceil(math.ceil(settings.demo_stations / batch) / 2) * batch
    return price.to_finish(min(half, settings.demo_stations), batch) / prices.MICRO


def run(r: redis.Redis, settings: settings_mod.Settings, timeout: float = 120.0) -> dict:
    day = settings.day.isoformat()
    pipeline.reset(r, day)
    pipeline.ch04_pipeline.reset_limits(r)   # the demo alone calls this API: a fresh limiter
    rows = []
    with tempfile.TemporaryDirectory(prefix="ch05-demo-") as folder:
        db = str(Path(folder) / "summaries.sqlite3")
        for budget in (first_budget(settings), None):
            said = "none" if budget is None else money(prices.to_micro(budget))
            print(f"Run {len(rows) + 1}: chapter 5's loop, batches of {pipeline.batch_size()} (the cheapest per "
                  f"station), budget {said}")
            run_id = pipeline.run(r, day, settings.demo_stations, db=db, timeout=timeout, show=True, budget=budget)
            row = reporting.wait(r, run_id, db=db) if run_id else None
            if row is None:
                break
            rows.append({**row, "page": str(reporting.page_path(run_id))})
            if row["outcome"] != "budget spent":
                break
        counts = pipeline.outcome(r, day, db, settings)
    _last.update(day=day, rows=rows, findings=quality.findings(r, day), budget=first_budget(settings))
    return counts


def story(stats: dict) -> str:
    """The day in one table: each run as it reported itself, then the day against the API's own figures."""
    day, rows = _last.get("day"), _last.get("rows") or []
    if not rows:
        return "No report: the run did not end in time (see the worker's log)."
    theirs = stats["by_day"].get(day, {})
    api_requests, api_429 = sum(theirs.values()), theirs.get("429", 0)
    api_bill = prices.to_micro(stats["bill"]["by_day"].get(day, 0))
    lines = ["", f"{'run':<16}{'outcome':<15}{'done':>6}{'requests':>10}{'429s':>6}{'cost':>10}   budget",
             f"{'':<16}{'':<15}{'(day)':>6}"]
    for row in rows:
        budget = "none" if row["budget_micro"] is None else money(row["budget_micro"])
        lines.append(f"{row['run']:<16}{row['outcome']:<15}{row['done']:>6}{row['api_requests']:>10}"
                     f"{row['rate_limited']:>6}{money(row['cost_micro']):>10}   {budget}")
    ours_requests = sum(row["api_requests"] for row in rows)
    ours_cost = sum(row["cost_micro"] for row in rows)
    last = rows[-1]
    lines.append(f"{'the day, ours':<16}{'':<15}{last['done']:>6}{ours_requests:>10}"
                 f"{sum(row['rate_limited'] for row in rows):>6}{money(ours_cost):>10}")
    lines.append(f"{'the API (/_stats)':<31}{'':>6}{api_requests:>10}{api_429:>6}{money(api_bill):>10}   "
                 + ("equal: reconciled" if (ours_requests, ours_cost) == (api_requests, api_bill) else "NOT equal"))
    by_rule = Counter(f["rule"] for f in _last["findings"])
    logged = len(stats.get("glitch_log", []))
    lines += [
        "",
        "requests: calls to /readings for this day; a 429 is a call the API refused as over its rate limit.",
        f"done (day): stations whose summary equals the answer key once the run ended; cost: what the run paid.",
        f"budget spent: the first run stopped before the call that would have taken it past its budget of "
        f"{money(prices.to_micro(_last['budget']))};",
        "  the stations it had not fetched waited for the next kick, and the second run finished them.",
        f"quality: {len(_last['findings'])} readings flagged and left out of the summaries "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_rule.items())) or 'none'}); the API's own glitch log: {logged}.",
        "reports: " + ", ".join(row["page"] for row in rows),
    ]
    _last["figures"] = {"requests": ours_requests, "cost_micro": ours_cost, "api_requests": api_requests,
                        "api_cost_micro": api_bill, "rate_limited": api_429}
    return "\n".join(lines)


def figures() -> dict:
    """What the story printed, for the kit's verdict and its test: ours and the API's, for the day."""
    return dict(_last.get("figures") or {})
