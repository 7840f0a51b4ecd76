"""A run's report: its figures (what the runs table holds), the terminal text, the HTML page.

The figures come from what the pipeline recorded (runs.py: the run's record,
counters and calls; the day's stages, dead letters and quality findings), then
are held against the API's own counts and bill (reconcile.py). The HTML page is
one self-contained file: its plots are embedded PNGs, it loads nothing.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter

import pandas as pd
import redis
from matplotlib.figure import Figure

from ch02_segmented import stages
from ch04_rate_limits import dead_letters
from ch04_rate_limits.keys import for_day
from workshop import settings as settings_mod

from . import prices, quality, reconcile, runs, runs_table
from .prices import money


def figures(r: redis.Redis, run: str, db: str | None = None, settings: settings_mod.Settings | None = None) -> dict:
    """The run's row of the runs table, from what Redis holds about it and the day, reconciled."""
    s = settings or settings_mod.load()
    info = runs.record(r, run)
    counters, calls, day = info["counters"], info["calls"], info["day"]
    k = for_day(day)
    buried = dead_letters.dead_letters(r, k)
    done, stations, pending = stages.count(r, k.persisted), stages.count(r, k.stations), stages.count(r, k.pending)
    started, finished = float(info["started"]), float(info.get("ended") or info["started"])
    duration = max(finished - started, 1e-9)
    accepted = counters.get("status:200", 0)
    reserved = max(counters.get("calls", 0), counters.get("requests", 0))
    lost = reserved - counters.get("requests", 0)
    span = (calls[-1]["at"] - calls[0]["at"]) + 1 / s.api_rate if calls else 0.0
    batch = prices.Prices.published(s).cheapest_batch(s.api_max_batch)
    budget = int(info.get("budget_micro", -1))
    row = {
        "run": run, "day": day, "started": started, "finished": finished, "outcome": info.get("outcome"),
        "stations": stations, "done": done, "dead_lettered": len(buried),
        "dead_reasons": dict(Counter(letter["reason"] for letter in buried.values())),
        "missing": stations - done - len(buried), "pending": pending,
        # A call is on record from its reservation: one never settled (its worker died) is a request whose
        # answer was lost, at what it reserved.
        "api_requests": reserved, "rate_limited": counters.get("status:429", 0),
        "server_errors": sum(n for name, n in counters.items() if name.startswith("status:5")),
        "no_answer": counters.get("status:none", 0) + lost, "answer_lost": lost,
        "retries": counters.get("retries", 0),
        "stations_fetched": counters.get("stations_fetched", 0),
        "glitches_found": len(quality.findings(r, day)), "cost_micro": counters.get("cost_micro", 0),
        "budget_micro": None if budget < 0 else budget,
        "to_finish_micro": prices.Prices.published(s).to_finish(pending, batch),
        "duration_s": round(duration, 3), "stations_per_s": round(counters.get("stations_fetched", 0) / duration, 2),
        "utilisation": round(accepted / (s.api_rate * span), 3) if span else 0.0,
    }
    earlier = [other for other in runs_table.rows(db, day) if other["run"] != run]
    found = reconcile.differences(reconcile.ours([*earlier, row]), reconcile.api_day(day, s))
    return {**row, "reconciled": int(not found), "differences": found}


def verdict(row: dict) -> str:
    """The report's first line: what happened, in one sentence."""
    head = f"Run {row['run']} ({row['day']}): {row['outcome']}"
    done = f"{row['done']} of {row['stations']} stations done"
    if row["outcome"] == "budget spent":
        return (f"{head}. {done}; {row['pending']} left unfetched, finishing would cost "
                f"{money(row['to_finish_micro'])}: kick again with a new budget.")
    if row["dead_lettered"] or row["missing"]:
        return f"{head}. {done}, {row['dead_lettered']} dead-lettered, {row['missing'] - row['pending']} in progress."
    return f"{head}. {done}: complete."


def text(row: dict) -> str:
    """The terminal report: the verdict, then the figures, then anything that did not reconcile."""
    budget = "none" if row["budget_micro"] is None else money(row["budget_micro"])
    lines = [
        verdict(row), "",
        f"{'stations done / dead / left':<30}{row['done']} / {row['dead_lettered']} / {row['missing']}",
        f"{'API requests (429s, 5xx)':<30}{row['api_requests']} ({row['rate_limited']}, {row['server_errors']})",
        f"{'retries, calls without answer':<30}{row['retries']}, {row['no_answer']}"
        + (f" ({row['answer_lost']} billed, answer lost)" if row.get("answer_lost") else ""),
        f"{'cost (budget)':<30}{money(row['cost_micro'])} ({budget})",
        f"{'cost per station done':<30}{money(row['cost_micro'] / row['done']) if row['done'] else '-'}",
        f"{'glitches found (day)':<30}{row['glitches_found']}",
        f"{'duration, stations/s':<30}{row['duration_s']:.1f} s, {row['stations_per_s']:.1f}",
        f"{'rate-limit utilisation':<30}{row['utilisation']:.0%}",
    ]
    if row["dead_reasons"]:
        lines.append(f"{'dead letters by reason':<30}" + ", ".join(f"{k} {v}" for k, v in row["dead_reasons"].items()))
    lines.append(f"{'reconciled with the API':<30}" + ("yes" if row["reconciled"] else "NO, see below"))
    for d in row["differences"] or []:
        lines.append(f"  {d['figure']}: ours {d['ours']}, the API's {d['api']}: {d['why']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ HTML

def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def timelines(calls: list[dict], budget_micro: int | None) -> str:
    """Three small plots of the run's calls over time: stations fetched, 429s and retries, cost."""
    if not calls:
        return "<p>No API calls in this run.</p>"
    table = pd.DataFrame(calls)
    table["t"] = table["at"] - table["at"].min()
    figure = Figure(figsize=(11, 3))
    fetched, troubles, cost = figure.subplots(1, 3)
    fetched.step(table["t"], table["fetched"].cumsum(), where="post")
    fetched.set(title="stations fetched", xlabel="s")
    troubles.step(table["t"], (table["status"] == 429).cumsum(), where="post", label="429s")
    troubles.step(table["t"], table["retry"].cumsum(), where="post", label="retries")
    troubles.set(title="429s and retries", xlabel="s")
    troubles.legend()
    cost.step(table["t"], table["cost_micro"].cumsum() / prices.MICRO, where="post", label="spent")
    if budget_micro is not None:
        cost.axhline(budget_micro / prices.MICRO, color="tab:red", linestyle="--", label="budget")
    cost.set(title="cost ($)", xlabel="s")
    cost.legend()
    return _png(figure)


def trend(history: list[dict]) -> str:
    """The runs so far: cost per station done, and stations done, run by run."""
    if len(history) < 2:
        return ""
    table = pd.DataFrame(history)
    figure = Figure(figsize=(7, 2.5))
    axes = figure.subplots()
    axes.bar(table["run"], table["cost_micro"] / table["done"].clip(lower=1) / prices.MICRO)
    axes.set(title="cost per station done, per run ($)")
    axes.tick_params(axis="x", labelrotation=30)
    return _png(figure)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(row: dict, calls: list[dict], findings: list[dict], buried: dict, history: list[dict]) -> str:
    """The run's report as one self-contained HTML page."""
    by_rule = Counter(f["rule"] for f in findings)
    letters = [{"station": s, **{k: v for k, v in d.items() if k in ("reason", "attempts", "detail")}}
               for s, d in sorted(buried.items())]
    shown = [{"run": h["run"], "outcome": h["outcome"], "done": h["done"], "requests": h["api_requests"],
              "cost": money(h["cost_micro"]), "reconciled": "yes" if h["reconciled"] else "no"} for h in history]
    differences = (_table(row["differences"], ["figure", "ours", "api", "difference", "why"]) if row["differences"]
                   else "<p>Every figure equals the API's own count and bill.</p>")
    rules = ", ".join(f"{k} {v}" for k, v in sorted(by_rule.items())) or "none"
    more = "<p>(the first 200)</p>" if len(findings) > 200 else ""
    dead = _table(letters, ["station", "reason", "attempts", "detail"]) if letters else "<p>None.</p>"
    data = json.dumps({k: v for k, v in row.items() if k != "differences"})
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left}.verdict{font-size:1.2em;font-weight:bold}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Run {html.escape(row['run'])}</title>
<style>{style}</style></head><body>
<h1>Run {html.escape(row['run'])}</h1>
<p class="verdict">{html.escape(verdict(row))}</p>
<pre>{html.escape(text(row))}</pre>
<h2>Over time</h2>{timelines(calls, row['budget_micro'])}
<h2>Reconciliation with the API</h2>
{differences}
<h2>Data quality ({len(findings)} findings: {html.escape(rules)})</h2>
<p>Policy: a flagged hour is left out of the summary and counted as a glitch.</p>
{_table(findings[:200], ["station", "hour", "rule", "value"])}{more}
<h2>Dead letters ({len(letters)})</h2>
{dead}
<h2>Runs of this day</h2>{trend(history)}
{_table(shown, ["run", "outcome", "done", "requests", "cost", "reconciled"])}
<p><small>figures: {html.escape(data)}</small></p>
</body></html>
"""
