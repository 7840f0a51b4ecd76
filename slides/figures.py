"""`make figures`: run the workshop's benchmarks at small sizes and write what the deck shows.

    .venv/bin/python slides/figures.py [--only loop,limits,cost,capstone,turn,cluster]
    .venv/bin/python slides/figures.py --replot     # no benchmark: the plots and values again from the JSON

Every number on a slide comes from here: the benchmarks write their figures as
JSON (`--out`), this script draws the plots from them and flattens the numbers
the deck quotes into `values.json` (`{{ name }}` in workshop.md). `made.json`
says which command wrote which file, when, and how long it took. About 6 minutes
on 2 cores; the benchmarks measure `solutions/` (WORKSHOP_TARGET=chapters: your own).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.text import Text

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "slides" / "figures"
sys.path.insert(0, str(ROOT))   # the kit, run as `python slides/figures.py` from a checkout
from workshop import machine as machine_mod   # noqa: E402

# name -> (module, arguments): small days, so the whole set runs in minutes.
BENCHMARKS = {
    "loop": ("ch03_signals.benchmark", ["--stations", "150"]),
    "limits": ("ch04_rate_limits.bench", ["--stations", "200"]),
    "cost": ("ch05_reporting.bench_cost", ["--stations", "200"]),
    "capstone": ("ch06_capstone.bench", ["--stations", "200", "--seconds", "2"]),
    "turn": ("ch04_rate_limits.bench_scale", ["--sizes", "1000,10000", "--small", "1000"]),
    "cluster": ("workshop.bench_cluster", ["--stations", "2000", "--days", "3"]),
}
# Each benchmark's JSON, and the plots it writes itself (the capstone draws its own two PNGs, for the
# notebook and `make bench-capstone`; the deck shows the slide versions drawn below from its JSON).
WRITES = {"loop": ["loop.json"], "limits": ["limits.json"], "cost": ["cost.json"],
          "capstone": ["capstone.json", "done_over_time.png", "scale_out.png"], "turn": ["scale.json"],
          "cluster": ["cluster.json"]}


def run_benchmarks(names: list[str], tree: str) -> dict[str, dict]:
    """Each benchmark in a process of its own, as `make bench-*` runs it: {name: how it was made}."""
    made = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT / tree), "WORKSHOP_TARGET": tree}
    for name in names:
        module, args = BENCHMARKS[name]
        command = [sys.executable, "-m", module, *args, "--out", str(OUT)]
        shown = f"PYTHONPATH={tree} python -m {module} {' '.join(args)} --out slides/figures"
        print(f"\n=== {name}: {shown}", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        missing = [f for f in WRITES[name] if not (OUT / f).exists()]
        if missing:
            raise SystemExit(f"figures: {module} wrote no {', '.join(missing)} (exit {code}); "
                             f"run `{shown}` to see why")
        if code:   # e.g. chapter 4's bench exits 1 when its limiter misses the target: a finding, on the slide
            print(f"figures: {module} exited {code}; its figures are kept and shown as measured")
        made[name] = {"command": shown, "exit": code, "seconds": round(time.monotonic() - started, 1),
                      "files": WRITES[name], "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    return made


def load(name: str) -> dict:
    return json.loads((OUT / f"{name}.json").read_text())


# ------------------------------------------------------------------ plots (SVG, drawn from the JSON)
# Drawn for a slide, not a page: wide and short, no title (the slide's heading is the title), every text
# at least SLIDE_PT. The deck shows a plot about 1,100 px wide, so a point is about 1.3 px there and 15 pt
# is about 19 px; `make slides-check` measures it from what record_text() writes beside the images.

SLIDE_PT = 15
SLIDE_STYLE = {"font.size": SLIDE_PT, "axes.labelsize": SLIDE_PT, "xtick.labelsize": SLIDE_PT,
               "ytick.labelsize": SLIDE_PT, "legend.fontsize": SLIDE_PT, "svg.hashsalt": "workshop"}
COLOURS = ["#5f6b78", "#3b6fd4", "#2b8a3e", "#d9480f"]   # dark enough for a white note inside


def _bars(labels, values, xlabel, notes=None, colors=None, height=2.9) -> Figure:
    figure = Figure(figsize=(11, height), layout="constrained")
    ax = figure.subplots()
    bars = ax.barh(labels, values, color=colors or COLOURS[:len(values)])
    for bar, note in zip(bars, notes or [f"{v:g}" for v in values]):
        inside = bar.get_width() >= 0.6 * max(values)   # a long bar holds its note: no text runs off the plot
        ax.annotate(note, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(-6 if inside else 6, 0),
                    textcoords="offset points", va="center", ha="right" if inside else "left",
                    color="white" if inside else "black", fontweight="bold" if inside else "normal")
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, xlim=(0, max(values) * 1.6 or 1))
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def plot_loop(loop: dict) -> Figure:
    results = loop["results"]
    return _bars(list(results), [f["stations/s"] for f in results.values()], "stations/s (higher is better)",
                 [f"{f['stations/s']:.1f}/s: {f['done']} of {f['stations']} done, {f['missing']} missing"
                  for f in results.values()])


def plot_periodic(loop: dict) -> Figure:
    f = next(iter(loop["results"].values()))   # chapter 1's periodic pipeline runs first
    parts = {"done right": f["done"], "missing": f["missing"], "wrong": f["wrong"], "done twice": f["twice"]}
    return _bars(list(parts), list(parts.values()), f"stations, of a day of {f['stations']}",
                 colors=["#2f9e44", "#e03131", "#e8590c", "#f59f00"], height=3.2)


def plot_limits(limits: dict) -> Figure:
    results = limits["results"]
    return _bars(list(results), [100 * f["utilisation"] for f in results.values()],
                 f"% of the API's {limits['api']['rate']:g} requests/s used ({limits['workers']} workers)",
                 [f"{f['utilisation']:.0%}, {f['429s']} 429s" for f in results.values()])


def plot_cost(cost: dict) -> Figure:
    results = cost["results"]
    per = [1000 * f["per_done"] / 1e6 if f["per_done"] else 0.0 for f in results.values()]
    return _bars(list(results), per, "$ per 1,000 stations done, by the API's own bill",
                 [f"${p:.2f} ({f['done']} of {f['stations']} done)" for p, f in zip(per, results.values())],
                 height=2.7)


def plot_done_over_time(capstone: dict) -> Figure:
    """Stations stored against seconds, one line per pipeline; the legend beside the axes, off the lines."""
    figure = Figure(figsize=(11, 3.4), layout="constrained")
    ax = figure.subplots()
    sides = capstone["side_by_side"]
    for (name, f), colour in zip(sides.items(), ["#e8590c", "#2f9e44"]):
        seconds, done = zip(*f["timeline"])
        ax.step(seconds, done, where="post", color=colour, linewidth=2.5,
                label=f"{name}:\n{f['done']} of {f['stations']} in {f['seconds']:.1f} s")
    ax.axhline(max(f["stations"] for f in sides.values()), color="grey", linewidth=1, linestyle=":")
    ax.set(xlabel="seconds since the first API request", ylabel="stations done", ylim=(0, None))
    ax.spines[["top", "right"]].set_visible(False)
    figure.legend(loc="outside right center", frameon=False)
    return figure


def plot_scale_out(capstone: dict) -> Figure:
    """Stations/s against worker processes: at the API's limit, and unthrottled."""
    rows, rate = capstone["scale_out"]["rows"], capstone["scale_out"]["limited"]["rate"]
    figure = Figure(figsize=(11, 2.9), layout="constrained")
    ax = figure.subplots()
    counts = [row["workers"] for row in rows]
    ax.plot(counts, [row["limited"]["stations/s"] for row in rows], marker="o", linewidth=2.5, color="#5b8def",
            label=f"at the API's limit\n({rate:g} requests/s)")
    ax.plot(counts, [row["unthrottled"]["stations/s"] for row in rows], marker="s", linewidth=2.5, color="#2f9e44",
            label="unthrottled")
    ax.set(xlabel="worker processes", ylabel="stations/s", xticks=counts, ylim=(0, None))
    ax.spines[["top", "right"]].set_visible(False)
    figure.legend(loc="outside right center", frameon=False)
    return figure


def record_text(figure: Figure) -> dict:
    """The figure's width and its smallest text, for `make slides-check` to size it as shown on the slide."""
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    least = min(texts, key=lambda t: t.get_fontsize())
    return {"width_pt": round(figure.get_figwidth() * 72, 1), "smallest_pt": round(least.get_fontsize(), 1),
            "smallest": least.get_text()}


def draw_plots() -> dict[str, dict]:
    """Every plot the deck shows, as SVG: {file: its text record}."""
    with rc_context(SLIDE_STYLE):
        loop, capstone = load("loop"), load("capstone")
        drawn = {"periodic.svg": plot_periodic(loop), "loop.svg": plot_loop(loop),
                 "limits.svg": plot_limits(load("limits")), "cost.svg": plot_cost(load("cost")),
                 "done_over_time.svg": plot_done_over_time(capstone), "scale_out.svg": plot_scale_out(capstone)}
        for file, figure in drawn.items():
            figure.savefig(OUT / file, metadata={"Date": None})   # no date: a replot of the same JSON is the same file
    return {file: record_text(figure) for file, figure in drawn.items()}


# ------------------------------------------------------------------ values the deck quotes

def _money(micro: float | None, places: int = 4) -> str:
    """Millionths of a dollar as dollars: 4 places for a run's bill (cents apart), 2 for prices per 1,000."""
    return "-" if micro is None else f"${micro / 1e6:.{places}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def values() -> dict[str, str]:
    """The numbers and tables the deck quotes, by name, formatted as on the slide."""
    loop, limits, cost, capstone = load("loop"), load("limits"), load("cost"), load("capstone")
    v: dict[str, str] = {}
    periodic, segmented, looped = loop["results"].values()
    for key, f in (("periodic", periodic), ("segmented", segmented), ("looped", looped)):
        v.update({f"loop.{key}.rate": f"{f['stations/s']:.1f}", f"loop.{key}.done": str(f["done"]),
                  f"loop.{key}.missing": str(f["missing"]), f"loop.{key}.twice": str(f["twice"]),
                  f"loop.{key}.requests": str(f["requests"]), f"loop.{key}.seconds": f"{f['seconds']:.1f}",
                  f"loop.{key}.429s": str(f["429s"]), f"loop.{key}.errors": str(f["errors"])})
    v["loop.stations"] = str(periodic["stations"])
    v["loop.batch"] = str(loop["batch"])
    v["loop.x_batching"] = f"{segmented['stations/s'] / periodic['stations/s']:.1f}" if periodic["stations/s"] else "n/a"
    v["loop.x_triggering"] = f"{looped['stations/s'] / segmented['stations/s']:.1f}" if segmented["stations/s"] else "n/a"
    v["loop.table"] = _table(["", *loop["results"]], [
        ["wall time (s)", *(f"{f['seconds']:.1f}" for f in loop["results"].values())],
        ["stations/s", *(f"{f['stations/s']:.1f}" for f in loop["results"].values())],
        ["done / missing / twice", *(f"{f['done']} / {f['missing']} / {f['twice']}" for f in loop["results"].values())],
        ["API requests (429s, 5xx)", *(f"{f['requests']} ({f['429s']}, {f['errors']})" for f in loop["results"].values())]])

    g, c = limits["results"]["global limiter"], limits["results"]["Celery rate_limit"]
    v.update({"limits.rate": f"{limits['api']['rate']:g}", "limits.workers": str(limits["workers"]),
              "limits.stations": str(g["stations"]),
              "limits.global.util": f"{g['utilisation']:.0%}", "limits.global.429s": str(g["429s"]),
              "limits.celery.util": f"{c['utilisation']:.0%}", "limits.celery.429s": str(c["429s"]),
              "limits.global.seconds": f"{g['seconds']:.1f}", "limits.celery.seconds": f"{c['seconds']:.1f}"})

    names = list(cost["results"])
    v["cost.table"] = _table(["", *names], [
        ["done right", *(f"{f['done']} of {f['stations']}" for f in cost["results"].values())],
        ["API requests", *(str(f["requests"]) for f in cost["results"].values())],
        ["the API's bill", *(_money(f["cost"]) for f in cost["results"].values())],
        ["per 1,000 done", *(_money(1000 * f["per_done"], 2) if f["per_done"] else "-" for f in cost["results"].values())]])
    budgeted = cost["results"][names[-1]]
    report = budgeted.get("report") or {}
    v.update({"cost.budget": f"${budgeted['budget']:.4f}", "cost.budget.billed": _money(budgeted["cost"]),
              "cost.budget.outcome": str(report.get("outcome", "no report")),
              "cost.budget.pending": str(report.get("pending", "-")),
              "cost.budget.to_finish": _money(report.get("to_finish_micro")),
              "cost.periodic.per_done": _money(1000 * cost["results"][names[0]]["per_done"], 2)
              if cost["results"][names[0]]["per_done"] else "-",
              "cost.aware.per_done": _money(1000 * cost["results"][names[2]]["per_done"], 2)})

    sides = capstone["side_by_side"]
    (pname, p), (lname, l) = sides.items()
    v["capstone.table"] = _table(["", pname, lname], [
        ["wall time (s)", f"{p['seconds']:.1f}", f"{l['seconds']:.1f}"],
        ["done / missing", f"{p['done']} / {p['missing']}", f"{l['done']} / {l['missing']}"],
        ["429s / 5xx", f"{p['429s']} / {p['errors']}", f"{l['429s']} / {l['errors']}"],
        ["cost per 1,000 done", _money(1000 * p["cost"] / p["done"], 2) if p["done"] else "-",
         _money(1000 * l["cost"] / l["done"], 2) if l["done"] else "-"]])
    v["capstone.predicted_missing"] = str(p.get("predicted_missing", "-"))
    v["capstone.periodic.missing"] = str(p["missing"])
    rows = capstone["scale_out"]["rows"]
    base = rows[0]["unthrottled"]["stations/s"]
    v["scale.table"] = _table(["workers", "at the limit: stations/s", "utilisation", "429s", "unthrottled: stations/s",
                               "x vs 1", "requests at once"], [
        [row["workers"], f"{row['limited']['stations/s']:.1f}", f"{row['limited']['fetch_utilisation']:.0%}",
         row["limited"]["429s"], f"{row['unthrottled']['stations/s']:.1f}",
         f"{row['unthrottled']['stations/s'] / base:.2f}" if base else "-",
         row["unthrottled"].get("peak_in_flight", "-")] for row in rows])
    v["scale.rate"] = f"{capstone['scale_out']['limited']['rate']:g}"
    if "restart" in capstone:
        naive, safe = capstone["restart"]
        v["restart.table"] = _table(["", naive["pipeline"], safe["pipeline"]], [
            ["stored at the end", naive["stations"] - naive["missing"], safe["stations"] - safe["missing"]],
            ["missing", naive["missing"], safe["missing"]],
            ["messages left unacknowledged", naive["stranded"], safe["stranded"]],
            ["stations fetched twice", naive["fetched_twice"], safe["fetched_twice"]],
            ["watchdog restarts (beat)", "-", safe.get("watchdog_restarts", "-")]])
        v["restart.stations"] = str(naive["stations"])
        v["restart.naive.missing"] = str(naive["missing"])
        v["restart.visibility"] = f"{naive['visibility_timeout']:g}"
    v.update(prose_values(loop, limits, cost, capstone))
    v.update(turn_values(load("scale")))
    v.update(cluster_values(load("cluster")))
    return v


# ------------------------------------------------------------------ values the chapters' prose quotes (`make docs`)

def _percent(share: float) -> str:
    return f"{share:.0%}".replace("%", " %")   # the prose writes 99 %, the deck 99%


def _pipelines_table(results: dict, extra: dict[str, list] | None = None) -> str:
    """A benchmark's pipelines side by side, as its own table prints them, for the DEEP_DIVEs."""
    fs = list(results.values())
    rows = [["wall time (s)", *(f"{f['seconds']:.1f}" for f in fs)],
            ["stations/s", *(f"{f['stations/s']:.1f}" for f in fs)],
            ["API utilisation", *(_percent(f["utilisation"]) for f in fs)],
            ["stations done (right)", *(f"{f['done']} of {f['stations']}" for f in fs)],
            ["stations wrong", *(str(f["wrong"]) for f in fs)],
            ["stations missing", *(str(f["missing"]) for f in fs)],
            ["stations done twice", *(str(f["twice"]) for f in fs)],
            ["API requests (accepted)", *(f"{f['requests']} ({f['accepted']})" for f in fs)],
            ["429s / 5xx", *(f"{f['429s']} / {f['errors']}" for f in fs)]]
    rows += [[name, *cells] for name, cells in (extra or {}).items()]
    return _table(["", *results], rows)


def measured(name: str) -> str:
    """When and on what machine a benchmark measured its figures: the prose says it beside them."""
    made = json.loads((OUT / "made.json").read_text())
    return machine_mod.said({"at": made[name]["at"], "machine": made.get("machine", {})}, "make figures")


def feedback_values() -> dict[str, str]:
    """`make bench-feedback`'s figures (feedback.json, written by `make bench-feedback`), when there are some."""
    path = OUT / "feedback.json"
    if not path.exists():
        return {}
    feedback = json.loads(path.read_text())
    rows, cell = feedback["rows"], (lambda s: "-" if s is None else f"{s:.1f} s")
    times = [row[k] for row in rows for k in ("stub_s", "wrong_s", "solution_s") if row[k] is not None]
    return {"measured.feedback": machine_mod.said(feedback, "make bench-feedback"),
            "feedback.median": f"{statistics.median(times):.1f} s", "feedback.slowest": f"{max(times):.1f} s",
            "feedback.table": _table(["exercise", "on the stub", "a wrong attempt", "on the solution"], [
                [row["exercise"], cell(row["stub_s"]), cell(row["wrong_s"]), cell(row["solution_s"])]
                for row in rows])}


def prose_values(loop: dict, limits: dict, cost: dict, capstone: dict) -> dict[str, str]:
    """The figures the READMEs, DEEP_DIVEs, instructor notes and notebooks quote, by name (`make docs`)."""
    v = {f"measured.{name}": measured(name) for name in BENCHMARKS}
    made = json.loads((OUT / "made.json").read_text())
    v["measured.cores"] = str(made.get("machine", {}).get("cpus", "?"))
    v.update(feedback_values())

    periodic, segmented, looped = loop["results"].values()
    v["loop.pipelines"] = _pipelines_table(loop["results"])
    for key, f in (("periodic", periodic), ("segmented", segmented), ("looped", looped)):
        v[f"loop.{key}.util"] = _percent(f["utilisation"])
    v["loop.rate"] = f"{loop['api']['rate']:g}"
    v["loop.burst"] = str(loop["api"]["burst"])
    v["loop.error_rate"] = _percent(loop["api"]["error_rate"])

    results = limits["results"]
    v["limits.pipelines"] = _pipelines_table(results)
    for key, f in zip(("global", "celery", "periodic"), results.values()):
        v[f"limits.{key}.rate"] = f"{f['stations/s']:.1f}"
        v[f"limits.{key}.done"] = str(f["done"])
        v[f"limits.{key}.requests"] = str(f["requests"])
    v["limits.periodic.util"] = _percent(results["periodic (ch01)"]["utilisation"])
    v["limits.global.util"] = _percent(results["global limiter"]["utilisation"])
    v["limits.celery.util"] = _percent(results["Celery rate_limit"]["utilisation"])
    v["limits.burst"] = str(limits["api"]["burst"])
    v["limits.batch"] = str(limits["api"]["max_batch"])

    results = cost["results"]
    p, l4, aware, budgeted = results.values()
    v["cost.pipelines"] = _pipelines_table(results, {
        "the API's bill": [_money(f["cost"]) for f in results.values()],
        "budget": [_money(f["budget"] * 1e6) if f.get("budget") else "-" for f in results.values()],
        "cost per 1,000 done right": [_money(1000 * f["per_done"], 2) if f["per_done"] else "-"
                                      for f in results.values()]})
    v["cost.stations"] = str(p["stations"])
    v["cost.rate"] = f"{cost['api']['rate']:g}"
    v["cost.error_rate"] = _percent(cost["api"]["error_rate"])
    v["cost.glitch_rate"] = _percent(cost["api"]["glitch_rate"])
    v["cost.max_batch"] = str(cost["api"]["max_batch"])
    v["cost.x_periodic"] = f"{p['per_done'] / aware['per_done']:.1f}"
    v["cost.periodic.missing"] = str(p["missing"])
    v["cost.loop.wrong"] = str(l4["wrong"])
    v["cost.aware.more_right"] = str(aware["done"] - l4["done"])
    v["cost.aware.less_per_right"] = _percent(1 - aware["per_done"] / l4["per_done"])
    v["cost.budget.requests"] = str(budgeted["requests"])
    call = budgeted["cost"] / budgeted["requests"]
    v["cost.budget.call"] = _money(call)
    v["cost.budget.next"] = _money(budgeted["cost"] + call)

    sides = capstone["side_by_side"]
    (pname, p), (lname, l) = sides.items()
    v["capstone.pipelines"] = _pipelines_table(sides, {
        "the API's bill": [_money(f["cost"]) for f in sides.values()],
        "cost per 1,000 done": [_money(1000 * f["cost"] / f["done"], 2) if f["done"] else "-" for f in sides.values()]})
    v["capstone.stations"] = str(p["stations"])
    v["capstone.periodic.runs"] = str(p.get("runs", "-"))
    v["capstone.periodic.runs_failed"] = str(p.get("runs_failed", "-"))
    v["capstone.looped.util"] = _percent(l["utilisation"])
    v["capstone.looped.requests"] = str(l["requests"])
    rows = capstone["scale_out"]["rows"]
    speeds = {row["workers"]: row["unthrottled"]["stations/s"] for row in rows}
    shares = [row["limited"]["fetch_utilisation"] for row in rows]
    v["scale.x_most"] = f"{speeds[max(speeds)] / speeds[min(speeds)]:.1f}"
    v["scale.most_workers"] = str(max(speeds))
    v["scale.one.util"] = _percent(rows[0]["limited"]["fetch_utilisation"])
    v["scale.util_range"] = f"{min(shares):.0%}–{max(shares):.0%}".replace("%", " %")
    limited = [row["limited"]["stations/s"] for row in rows]
    v["scale.limited_range"] = f"{min(limited):.1f}–{max(limited):.1f}"
    v["scale.stations"] = str(rows[0]["limited"]["stations"])
    if "restart" in capstone:
        naive, safe = capstone["restart"]
        v["restart.naive.carried"] = str(len(set(naive["missing_stations"]) & set(naive["stranded_stations"])))
        v["restart.naive.stranded"] = str(naive["stranded"])
        v["restart.naive.more"] = str(naive["stored_after_worker_restart"] - naive["stored"])
        v["restart.down"] = f"{naive['down']:.0f}"
        v["restart.looped.missing"] = str(safe["missing"])
        v["restart.looped.stranded"] = str(safe["stranded"])
        tasks = sorted({name.rsplit(".", 1)[-1] for name in safe.get("stranded_tasks", [])})
        v["restart.looped.stranded_tasks"] = ", ".join(f"`{t}`" for t in tasks) or "none"
    return v


def _verdict(verdict: dict) -> str:
    """A verdict as `make bench-scale` judged it (the median of the rounds), with every round's."""
    return (f"{verdict['value']:.2f} ({'met' if verdict['met'] else 'missed'}: "
            f"{'at most' if verdict['at most'] else 'at least'} {verdict['target']:g}; "
            f"rounds {', '.join(f'{r:.2f}' for r in verdict['rounds'])})")


def turn_values(scale: dict) -> dict[str, str]:
    """`make bench-scale`'s figures at small sizes (chapter 4's DEEP_DIVE, "What a turn costs")."""
    batch, verdicts = str(scale["batch"]), scale["verdicts"]
    one, many = scale["turn"]["1"], scale["turn"][batch]
    v = {"turn.table": _table(["stations", "wall s", "stations/s", "ms per batch", "fetch stations/s", "answer key"], [
        [f"{int(n):,}", f"{f['seconds']:.1f}", f"{f['stations/s']:.0f}", f"{f['ms/batch']:.1f}",
         f"{f['fetch stations/s']:.0f}", "equal" if f["correct"] else "NOT equal"] for n, f in scale["sizes"].items()])}
    v.update({"turn.batch": batch, "turn.small": f"{scale['small']:,}", "turn.rounds": str(scale["rounds"]),
              "turn.sizes": " and ".join(f"{int(n):,}" for n in scale["sizes"]),
              "turn.linear": f"{verdicts['linear cost']['value']:.2f}",
              "turn.one": _verdict(verdicts["turn at batch 1"]),
              "turn.one.ms": f"{one['loop ms']:.2f} ms against {one['raw ms']:.2f} ms",
              "turn.many": _verdict(verdicts[f"turn at batch {batch}"]),
              "turn.many.ms": f"{many['loop ms']:.1f} ms against {many['raw ms']:.1f} ms",
              "turn.rate": _verdict(verdicts["stations/s"]),
              "turn.met": f"{sum(scale['met'].values())} of {len(scale['met'])}",
              "turn.one.commands": str(one["commands"]), "turn.many.commands": f"{many['commands']:,}",
              "turn.round_trips": str(one["round trips"])})
    growth = []
    for name, per_size in scale.get("µs per call", {}).items():
        (small, first), (large, last) = list(per_size.items())[0], list(per_size.items())[-1]
        growth.append(f"`{name.upper()}` {first:.0f} µs at {int(small):,} stations, {last:.0f} µs at {int(large):,}")
    v["turn.growth"] = "; ".join(growth) or "-"
    found = scale.get("pieces", {})
    loop, raw = found.get("fetch_batch", {}), found.get("raw_call", {})
    v["turn.pieces"] = _table(["ms per turn (mean), batch 1", "fetch turn", "raw-call turn"], [
        [what, f"{loop.get(name, 0):.2f}", f"{raw.get(name, 0):.2f}"]
        for name, what in found.get("what", {}).items() if name in loop or name in raw] + [
        ["the task in the pool process (prerun to postrun)", f"{loop.get('task', 0):.2f}", f"{raw.get('task', 0):.2f}"]])
    return v


def cluster_values(cluster: dict) -> dict[str, str]:
    """`make bench-cluster`'s figures (chapter 4's DEEP_DIVE, "The state on a Redis Cluster")."""
    results = cluster["results"]
    rows = []
    for name, f in results.items():
        cpu = sum(c for c, _ in f["nodes"].values())
        per_node = ", ".join(f"{c:.2f} s / {ops:,}" for c, ops in f["nodes"].values())
        rows.append([name, f"{f['done']:,}" + ("" if f["complete"] else " (incomplete)"), f"{f['seconds']:.1f}",
                     f"{f['stations/s']:.0f}", f"{cpu:.2f}", per_node])
    days = list(cluster["placement"])
    ports = next((list(f["nodes"]) for name, f in results.items() if len(f["nodes"]) > 1), [])
    node = {int(port): i + 1 for i, port in enumerate(ports)}   # the ports change from run to run: numbered
    return {"cluster.table": _table(["state on", "stations done", "s", "stations/s", "Redis CPU s (all nodes)",
                                     "per node (1, 2, 3): CPU s / commands"], rows),
            "cluster.days": str(cluster["days"]), "cluster.stations": f"{cluster['stations']:,}",
            "cluster.nodes_used": str(len(set(cluster["placement"].values()))),
            "cluster.placement": ", ".join(f"{day} on node {node.get(int(port), '?')}"
                                           for day, port in cluster["placement"].items()),
            "cluster.first_day": days[0] if days else "-"}


def machine(tree: str) -> dict:
    """What measured the figures: the prose quotes it beside them (`make docs`)."""
    return machine_mod.describe(tree)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slides/figures.py", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"benchmarks to run again, comma-separated (default all: {','.join(BENCHMARKS)}); "
                             "the others' files are kept")
    parser.add_argument("--replot", action="store_true",
                        help="run no benchmark: draw the plots and values.json again from the JSON in slides/figures/")
    args = parser.parse_args(argv)
    names = [] if args.replot else [name for name in args.only.split(",") if name]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; pick from {', '.join(BENCHMARKS)}")
    tree = os.environ.get("WORKSHOP_TARGET") or "solutions"
    OUT.mkdir(parents=True, exist_ok=True)
    made_file = OUT / "made.json"
    made = json.loads(made_file.read_text()) if made_file.exists() else {}
    started = time.monotonic()
    made.update(run_benchmarks(names, tree))
    missing = sorted(set(BENCHMARKS) - set(made))
    if missing:
        raise SystemExit(f"figures: no figures yet from {', '.join(missing)}; run `make figures` once without --only")
    plotted = draw_plots()
    made["plots"] = {"command": "python slides/figures.py (from the JSON above)", "files": list(plotted),
                     "text": plotted}
    if names:   # --replot measured nothing: the machine that did stays on record
        made["machine"] = machine(tree)
    made_file.write_text(json.dumps(made, indent=1) + "\n")
    (OUT / "values.json").write_text(json.dumps(values(), indent=1, sort_keys=True) + "\n")
    print(f"\nfigures: {len(plotted)} plots and values.json in {OUT.relative_to(ROOT)} "
          f"({time.monotonic() - started:.0f} s); `make slides` builds the deck from them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
