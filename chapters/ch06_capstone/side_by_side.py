# Exercise copy of solutions/ch06_capstone/side_by_side.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Periodic vs looped, one run: chapter 1's pipeline and the final one, same day, faults, limit and prices.

Each pipeline gets a fresh fake API of the same configuration (on 127.0.0.1) and
two prefork worker processes of its own app; a thread samples the stations it has
stored every 0.2 s. The figures come from the outside, as in every chapter:
the API's own `/_stats` and bill, and the stored summaries against the answer key.

- periodic (ch01): a slice of SLICE_SIZE stations every BEAT_INTERVAL seconds, one
  request per station, no retry: a failed request ends its run, and the rest of
  the slice is never done (its run log says which: `predicted_missing`).
- looped (ch05): chapter 5's pipeline, no budget: batches paced by the global
  limiter, each started by the end of the one before, retried, reported.
"""
from __future__ import annotations

from ch01_periodic import runs as ch01_runs
from ch01_periodic.keys import key as periodic_key
from ch02_segmented import stages
from ch03_signals import benchmark
from ch04_rate_limits import keys as ch04_keys
from ch05_reporting import bench_cost, prices

from . import published
from .timeline import Timeline

PERIODIC, LOOPED = "periodic (ch01)", "looped (ch05)"
__all__ = ["PERIODIC", "LOOPED", "run", "predicted_missing", "table"]


def _periodic_done(r, day: str) -> int:
    return r.hlen(periodic_key(day, "summaries"))


def _looped_done(r, day: str) -> int:
    return stages.count(r, ch04_keys.for_day(day).persisted)


def _timed(run, done):
    """`run` (a side_by_side runner) with a timeline of `done(r, day)`, in seconds after the API's first
    request, up to the end of the run (not the workers' shutdown after it)."""
    def runner(r, api, settings, ids, timeout):
        day = settings.day.isoformat()
        with Timeline(lambda: done(r, day)) as timeline:
            f = run(r, api, settings, ids, timeout)
        return {**f, "timeline": timeline.since(api.stats()["first_request_at"], f["seconds"])}
    return runner


def run(r, config, ids: list[str], timeout: float, log_dir: str) -> dict[str, dict]:
    """Both pipelines in turn on `config`'s API, its limit and batch published: {name: figures}, each with
    its cost and timeline."""
    runners = {PERIODIC: _timed(_periodic(log_dir), _periodic_done),
               LOOPED: _timed(lambda *a: bench_cost.run_ch05(*a, log_dir), _looped_done)}
    with published.terms(**published.of(config)):
        return benchmark.side_by_side(r, config, runners, ids, timeout)


def predicted_missing(runs_done: list[ch01_runs.Run], stations: int) -> int:
    """What chapter 1's run log predicts it leaves missing: a failed request ends its run and the cursor
    moves past the slice anyway, so a station is missing when no run did it: it was in the tail of a run
    that failed before reaching it (or no run took it), and in the done part of none (overlapping runs take
    the same slice)."""
    done = set()
    for run in runs_done:
        if run.start is not None:
            done.update(range(run.start, run.start + run.done))
    return stations - len(done & set(range(stations)))


def _periodic(log_dir: str):
    def runner(r, api, settings, ids, timeout):
        f = bench_cost.run_periodic(r, api, settings, ids, timeout, log_dir)
        runs_done = ch01_runs.log(r, settings.day.isoformat())
        return {**f, "runs": len(runs_done), "runs_failed": sum(run.error is not None for run in runs_done),
                "predicted_missing": predicted_missing(runs_done, len(ids))}
    return runner


COST_ROWS = (
    ("cost (the API's bill)", lambda f: prices.money(f["cost"])),
    ("cost per 1,000 done", lambda f: prices.money(1000 * f["per_done"]) if f["per_done"] else "-"),
)


def table(results: dict[str, dict]) -> str:
    """Chapter 3's comparison rows, and what each day cost."""
    return benchmark.table(results, benchmark.ROWS + COST_ROWS)
