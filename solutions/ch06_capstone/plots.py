"""The chapter's two plots, as matplotlib Figures (no pyplot: the same code in a notebook, a benchmark or CI)."""
from __future__ import annotations

import io

from matplotlib.figure import Figure

from .scale_out import speedups


def done_over_time(results: dict[str, dict]) -> Figure:
    """Stations done against seconds since each pipeline's first API request, one line per pipeline."""
    figure = Figure(figsize=(7, 3.6))
    ax = figure.subplots()
    for name, f in results.items():
        if f.get("timeline"):
            seconds, done = zip(*f["timeline"])
            ax.step(seconds, done, where="post", label=f"{name}: {f['done']} of {f['stations']} in {f['seconds']:.1f} s")
    stations = max(f["stations"] for f in results.values())
    ax.axhline(stations, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="seconds since the first API request", ylabel="stations done", title="Periodic vs looped, same day")
    ax.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def scale_out(rows: list[dict], limited: dict) -> Figure:
    """Stations/s against worker processes: under the API's limit (flat at the limit) and unthrottled."""
    figure = Figure(figsize=(7, 3.6))
    ax = figure.subplots()
    counts = [row["workers"] for row in rows]
    ax.plot(counts, [row["limited"]["stations/s"] for row in rows], marker="o",
            label=f"API limit {limited['rate']:g} requests/s (429s: "
                  f"{sum(row['limited']['429s'] for row in rows)})")
    ax.plot(counts, [row["unthrottled"]["stations/s"] for row in rows], marker="s",
            label="unthrottled (x " + ", ".join(f"{s:.2f}" for s in speedups(rows)) + ")")
    ax.set(xlabel="worker processes", ylabel="stations/s", xticks=counts, title="Scale out", ylim=(0, None))
    ax.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes: `IPython.display.Image(png(figure))` in a notebook, a file elsewhere."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
