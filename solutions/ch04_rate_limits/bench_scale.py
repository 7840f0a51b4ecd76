"""Does one turn of the loop cost close to the bare API call, and the same per batch on a big day as on a small one?

    PYTHONPATH=solutions python -m ch04_rate_limits.bench_scale [--sizes 1000,10000,100000] [--batch 50]
    make bench-scale

Chapter 4's loop, unthrottled (an API limit far above what two cores can ask, a
window of two), on two real worker processes (prefork, one pool process each).
Beside it, in the same run and on the same workers, two baselines:

- the raw-call chain: a plain task that makes the SAME API call (`client.fetch`)
  for the next batch of the same size and sends itself again from `task_success`,
  as the loop sends its next batch (two chains, one per worker): what a fetch turn
  would cost without the loop's state (no lease, no limiter, no turn, no history);
- the no-op chain: the same without the API call, Celery's raw ceiling.

Twice: at batch 1 (a turn's own work as small as it gets: what is left is the loop's
cost; on a day of --small stations) and at --batch (50), each on workers started
with that batch size. Printed:

- per size at --batch: wall time (first API request to the loop's end), stations/s
  (the whole day: fetch, transform, persist), loop turns, ms per batch, whether the
  day equals the answer key; and ms per batch at the largest size / the smallest
  (target: at most 1.3, a linear cost);
- the fetch phase (the history's fetch entries, first start to last end): fetch turns/s
  and stations/s, against the raw-call chain's: one fetch turn / one raw-call turn
  (targets: at most 1.5 at batch 1, 1.1 at --batch) and the loop's fetch stations/s /
  the raw-call chain's (target: at least 0.9 at --batch). The whole day's stations/s
  is printed too: it also transforms and persists, which the raw-call chain does not.
  Each ratio is measured in --rounds (3) rounds, a loop day and a raw-call chain over as
  many stations back to back (the order alternating), and judged on the rounds' median,
  printed with every round's: on a shared machine one pair of runs can land on a quiet
  and a busy second, and a single ratio then says more about the neighbours than the loop;
- round trips and Redis commands per fetch turn, counted (turn_cost.py, on a Redis of
  its own, in this process): the same figures tests/test_ch04_scale.py asserts;
- Redis's own time per command (INFO commandstats, reset before each size), so a command
  that grows with the day's size shows as a growing microseconds-per-call.

Each verdict says whether its target is met; the command exits 1 if one is not (or a
day is not equal to the answer key). Timings on a shared machine are noisy: run it a
few times. The default sizes take a few minutes; --sizes 1000,10000 is quicker.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from celery.signals import task_success

from ch02_segmented import pipeline as segment_pipeline
from ch03_signals import history, pipeline as ch03_pipeline
from ch03_signals.benchmark import aligned, figures, write_figures
from workshop import api as api_module, api_bench, settings as settings_mod, stations as answer_key
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import redis_client, use_redis
from workshop.own_redis import OwnRedis
from workshop.redis_provider import provide_redis
from workshop.workers import WorkerProcesses

from . import client, limiter, pipeline, turn_cost
from .app import app

BATCH = 50
SMALL = 2000          # stations of the batch-1 day
ROUNDS = 3            # loop days paired with a raw-call chain, per batch size: the verdicts take the median
PAIR = 10_000         # stations of each round's day at --batch
WORKERS = 2
UNTHROTTLED = limiter.Limit(1_000_000, 1_000_000)   # far above what two cores can ask of the API
RAW_DONE = "bench:scale:raw:done"                  # one entry per raw chain that ran to its end
TARGETS = {"turn at batch 1": 1.5, "turn at batch": 1.1, "stations/s at batch": 0.9, "linear": 1.3}


# ---------------------------------------------------------------- the baselines

@app.task(name="ch04_rate_limits.bench_scale.noop")
def noop(left: int) -> int:
    """Nothing: what a turn would cost if the loop did no work at all."""
    return left


@functools.lru_cache(maxsize=4)
def _ids(stations: int) -> list[str]:
    return answer_key.station_ids(stations)


@app.task(name="ch04_rate_limits.bench_scale.raw_call")
def raw_call(left: int, position: int, stations: int, day: str) -> tuple:
    """The loop's API call and nothing else: the batch at `position` of the day's first `stations` ids."""
    settings = settings_mod.load()   # (as the loop's fetch does, per task)
    size, ids = settings.api_max_batch, _ids(stations)
    batch = ids[position % len(ids):][:size] or ids[:size]
    client.fetch(batch, day, settings)
    return left, position + size, stations, day


def _send_next(sender, result=None, **_) -> None:
    """task_success of a raw chain's task, in the pool process: send the chain's next one, as the loop does."""
    left = result[0] if isinstance(result, (list, tuple)) else result
    if left and left > 1:
        if sender.name == raw_call.name:
            raw_call.apply_async((left - 1, *result[1:]), headers={"bench": "raw"})
        else:
            noop.apply_async((left - 1,), headers={"bench": "raw"})
    else:
        redis_client().rpush(RAW_DONE, time.time())


task_success.connect(_send_next, sender=noop, weak=False, dispatch_uid="bench_scale:noop")
task_success.connect(_send_next, sender=raw_call, weak=False, dispatch_uid="bench_scale:raw_call")


# ---------------------------------------------------------------- where a turn's time goes

PIECES_ENV = "BENCH_SCALE_PIECES"   # a folder: each worker process writes there what its turns' pieces took
# The pieces of a turn, timed where they run: (module, function, what it is). The task's own span (task_prerun to
# task_postrun) in the pool process; the receipt in the worker's main process.
PIECES = (("client", "fetch", "the API call"), ("fetch", "pipelined", "the two pipelines of scripts (the start and the "
          "limiter; the settle and the circuit)"), ("turn", "take", "the next turn (turn.py, one script)"),
          ("history", "append_once", "the history's row"), ("retries", "count_delivery", "the receipt (main process)"),
          ("celery", "apply_async", "the publish of the next message"))


def time_pieces(folder: str) -> None:
    """In a worker (both its processes): time each piece of each turn, by the task it ran in; written to
    `folder` when the process ends. Wrapped where the lesson code looks them up, so nothing else changes."""
    from celery.app.task import Task
    from celery.signals import task_postrun, task_prerun, worker_process_shutdown, worker_shutdown
    from . import fetch as fetch_module, retries, turn
    modules = {"client": client, "fetch": fetch_module, "turn": turn, "history": history, "retries": retries,
               "celery": Task}
    spent: dict[str, list[float]] = {}
    running = ["main"]   # the task this process runs now ("main": the worker's main process)

    def timed(owner, name: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent.setdefault(f"{running[0]}:{name}", []).append(time.perf_counter() - started)
        setattr(owner, name, wrapper)

    for module, name, _ in PIECES:
        timed(modules[module], name)
    begun: dict[str, float] = {}

    def prerun(task_id=None, task=None, **_):
        running[0], begun[task_id] = task.name.rsplit(".", 1)[-1], time.perf_counter()

    def postrun(task_id=None, task=None, **_):
        if task_id in begun:
            spent.setdefault(f"{running[0]}:task", []).append(time.perf_counter() - begun.pop(task_id))

    def write(**_):
        if spent:
            Path(folder, f"{os.getpid()}.json").write_text(json.dumps(spent))
    task_prerun.connect(prerun, weak=False, dispatch_uid="bench_scale:pieces:start")
    task_postrun.connect(postrun, weak=False, dispatch_uid="bench_scale:pieces:end")
    worker_process_shutdown.connect(write, weak=False, dispatch_uid="bench_scale:pieces:pool")
    worker_shutdown.connect(write, weak=False, dispatch_uid="bench_scale:pieces:main")


if os.environ.get(PIECES_ENV):   # set by main() for the batch-1 workers only
    time_pieces(os.environ[PIECES_ENV])


def pieces(folder: str) -> dict[str, dict[str, float]]:
    """Per task kind ("fetch_batch", "raw_call"), each piece's mean ms per turn: its time over the task's turns."""
    spent: dict[str, list[float]] = {}
    for path in Path(folder).glob("*.json"):
        for key, values in json.loads(path.read_text()).items():
            spent.setdefault(key, []).extend(values)
    turns = {kind: len(spent.get(f"{kind}:task", [])) for kind in ("fetch_batch", "raw_call")}
    out: dict[str, dict[str, float]] = {}
    for kind, n in turns.items():
        if not n:
            continue
        row = {"task": 1000 * sum(spent[f"{kind}:task"]) / n}
        for _, name, _ in PIECES:
            where = "main" if name == "count_delivery" else kind   # only the loop's fetch messages are counted
            if spent.get(f"{where}:{name}") and (where != "main" or kind == "fetch_batch"):
                row[name] = 1000 * sum(spent[f"{where}:{name}"]) / n
        out[kind] = row
    return out


def pieces_table(found: dict[str, dict[str, float]]) -> str:
    loop, raw = found.get("fetch_batch", {}), found.get("raw_call", {})
    rows = [("ms per turn (mean)", "fetch turn", "raw-call turn")]
    for _, name, what in PIECES:
        if name in loop or name in raw:
            rows.append((what, f"{loop.get(name, 0):.2f}", f"{raw.get(name, 0):.2f}"))
    rows.append(("the task in the pool process (prerun to postrun)", f"{loop.get('task', 0):.2f}",
                 f"{raw.get('task', 0):.2f}"))
    return aligned(rows, left=1)


def chains(r, first, tasks_per_chain: int, timeout: float) -> float:
    """Tasks per second over two self-sending chains (one per worker); `first(chain)` sends a chain's first."""
    r.delete(RAW_DONE)
    started = time.time()
    for chain in range(WORKERS):
        first(chain)
    deadline = time.monotonic() + timeout
    while r.llen(RAW_DONE) < WORKERS:   # polled: a blocking pop would outlast the client's socket timeout
        if time.monotonic() > deadline:
            raise SystemExit(f"the raw chains did not end within {timeout:g} s")
        time.sleep(0.05)
    return WORKERS * tasks_per_chain / (max(map(float, r.lrange(RAW_DONE, 0, -1))) - started)


def raw_ceiling(r, tasks_per_chain: int, timeout: float) -> float:
    """Raw no-op tasks per second."""
    return chains(r, lambda chain: noop.apply_async((tasks_per_chain,), headers={"bench": "raw"}),
                  tasks_per_chain, timeout)


def raw_calls(r, stations: int, tasks_per_chain: int, timeout: float) -> float:
    """Raw-call tasks (one API request each, the loop's batch size) per second; each chain starts half a day on."""
    day = settings_mod.load().day.isoformat()
    api_module.forget_bodies()   # the API makes every body afresh, as for the loop
    return chains(r, lambda chain: raw_call.apply_async((tasks_per_chain, chain * stations // WORKERS, stations, day),
                                                        headers={"bench": "raw"}), tasks_per_chain, timeout)


# ---------------------------------------------------------------- the loop at one size

def run_size(r, api: ApiServer, stations: int, batch: int, timeout: float) -> dict:
    """A fresh day of the API's first `stations`, the loop until it ends: its figures."""
    day = settings_mod.load().day.isoformat()
    ids = answer_key.station_ids(stations)
    with tempfile.TemporaryDirectory(prefix="ch04-scale-") as folder:
        pipeline.reset(r, day)
        pipeline.reset_limits(r)
        r.delete(pipeline.HISTORY)
        ch03_pipeline.discover(day, stations)
        api.reset()                               # count from the loop's first request
        api_module.forget_bodies()                # the API makes every body afresh, as for the raw-call chain
        r.config_resetstat()
        db = str(Path(folder) / "summaries.sqlite3")
        pipeline.kick(r, day, db=db, limit=UNTHROTTLED)
        over = pipeline.LOOP.wait(r, day, timeout)
        finished = time.time()
        commands = r.info("commandstats")
        turns = sum(pipeline.LOOP.status(r, day)["chains"].values())
        summaries = {row["station"]: row for row in segment_pipeline.persisted_rows(r, day, db)}
        row = figures(api.stats(), summaries, ids, day, finished, over)
        fetches = [e for e in history.wait(r, day, lambda rows: sum(e["task"] == "fetch_batch" for e in rows)
                                           >= math.ceil(stations / batch), 10.0, pipeline.HISTORY)
                   if e["task"] == "fetch_batch"]
    span = max(e["finished"] for e in fetches) - min(e["started"] for e in fetches) if fetches else 0.0
    batches = math.ceil(stations / batch)
    return {**row, "turns": turns, "ms/batch": 1000 * row["seconds"] / batches,
            "turns/s": turns / row["seconds"] if row["seconds"] else 0.0, "commandstats": commands,
            "fetch turns/s": len(fetches) / span if span else 0.0,
            "fetch stations/s": sum(e["stations"] for e in fetches) / span if span else 0.0,
            "correct": row["done"] == stations and not row["missing"] and not row["wrong"] and over}


def api_capacity(stations: int, batch: int, seconds: float = 3.0, clients: int = 4) -> float:
    """The fake API's readings per second at batches of `batch`, in its own process (workshop bench-api)."""
    process, url = api_bench.start_server(stations, max_batch=batch)
    try:
        phase = api_bench.run_phase(url, "/readings", clients=clients, seconds=seconds, max_requests=100_000,
                                    batch=batch, stations_count=stations)
    finally:
        api_bench.stop_server(process)
    return phase.rate * batch


def counted(api: ApiServer, batch: int, stations: int) -> turn_cost.Cost:
    """Round trips and commands per fetch turn (turn_cost.py), the median over a day, on a Redis of its own."""
    with tempfile.TemporaryDirectory(prefix="ch04-turn-cost-") as folder:
        own = OwnRedis(Path(folder))
        own.start()
        try:
            with settings_mod.environment({"REDIS_URL": own.url, "API_MAX_BATCH": str(batch)}):
                cost = turn_cost.count_day(redis_client(), settings_mod.load().day.isoformat(),
                                           answer_key.station_ids(stations), str(Path(folder) / "s.sqlite3"),
                                           limit=UNTHROTTLED)
        finally:
            own.stop_all()
    return turn_cost.median(cost["fetch_batch"])


# ---------------------------------------------------------------- printing

def size_table(results: dict[int, dict]) -> str:
    rows = [("stations", "wall s", "stations/s", "turns", "turns/s", "ms/batch", "fetch stations/s", "answer key")]
    for stations, f in results.items():
        rows.append((f"{stations:,}", f"{f['seconds']:.1f}", f"{f['stations/s']:.0f}", f"{f['turns']:,}",
                     f"{f['turns/s']:.0f}", f"{f['ms/batch']:.1f}", f"{f['fetch stations/s']:.0f}",
                     "equal" if f["correct"] else f"{f['done']} done, {f['missing']} missing, {f['wrong']} wrong"))
    return aligned(rows)


def commands_table(results: dict[int, dict], top: int = 8) -> str:
    """The commands that took Redis the most time at the largest size: µs per call and share, per size."""
    largest = results[max(results)]["commandstats"]
    names = sorted(largest, key=lambda name: -largest[name]["usec"])[:top]
    header = ["command"] + [f"{s:,}: µs/call  calls" for s in results]
    rows = [header]
    for name in names:
        cells = [name.removeprefix("cmdstat_")]
        for f in results.values():
            stat = f["commandstats"].get(name)
            cells.append(f"{stat['usec_per_call']:>6.1f} {stat['calls']:>9,}" if stat else "-")
        rows.append(cells)
    return aligned(rows)


def judge(values: list[float], target: float, at_most: bool = True) -> dict:
    """The median of `values` (the rounds; or one value) against its target: what is printed and written."""
    value = statistics.median(values)
    return {"value": value, "rounds": values, "target": target, "at most": at_most,
            "met": value <= target if at_most else value >= target}


def said(verdict: dict) -> str:
    return (f"{verdict['value']:.2f} (target {'at most' if verdict['at most'] else 'at least'} {verdict['target']:g}: "
            f"{'met' if verdict['met'] else 'MISSED'})")


def run_batch(api: ApiServer, r, batch: int, sizes: list[int], args, logs: str) -> dict:
    """Workers started with this batch size: the loop at each size; then `args.rounds` rounds, each a loop day
    and a raw-call chain over the same number of stations, back to back (in turn loop first, raw first, so a
    machine that slows down or speeds up during the run weighs on both alike); then the no-op chain."""
    os.environ["API_MAX_BATCH"] = str(batch)   # what the workers read at start
    out: dict = {"sizes": {}, "rounds": []}
    with WorkerProcesses("ch04_rate_limits.bench_scale", WORKERS, pool="prefork", concurrency=1,
                         loglevel="WARNING", log_dir=logs):
        for stations in sizes:
            print(f"loop, batches of {batch}, {stations:,} stations ...", flush=True)
            out["sizes"][stations] = run_size(r, api, stations, batch, args.timeout)
        pair = sizes[-1] if batch == 1 else min(sizes[-1], args.pair)
        per_chain = min(args.raw_tasks, max(50, math.ceil(pair / batch / WORKERS)))
        for i in range(args.rounds):
            print(f"round {i + 1} of {args.rounds}: the loop over {pair:,} stations and raw-call chains "
                  f"({WORKERS} x {per_chain}), batches of {batch} ...", flush=True)
            day = (lambda: out["sizes"][pair]) if i == 0 and pair in out["sizes"] else \
                (lambda: run_size(r, api, pair, batch, args.timeout))
            if i % 2:
                raw = raw_calls(r, pair, per_chain, args.timeout)
                loop = day()
            else:
                loop = day()
                raw = raw_calls(r, pair, per_chain, args.timeout)
            out["rounds"].append({"loop": loop, "raw calls/s": raw})
        print(f"raw no-op chains, {WORKERS} x {args.raw_tasks} ...", flush=True)
        out["raw noop/s"] = raw_ceiling(r, args.raw_tasks, args.timeout)
    return out


def turn_ms(rate: float) -> float:
    """Milliseconds of a worker per turn, from turns per second over the WORKERS."""
    return 1000 * WORKERS / rate if rate else float("inf")


def ratios_of(out: dict) -> list[float]:
    """Per round: one fetch turn / one raw-call turn."""
    return [turn_ms(p["loop"]["fetch turns/s"]) / turn_ms(p["raw calls/s"]) for p in out["rounds"]]


def medians_of(out: dict) -> tuple[float, float]:
    """The rounds' median ms of a worker per fetch turn and per raw-call turn."""
    return (statistics.median(turn_ms(p["loop"]["fetch turns/s"]) for p in out["rounds"]),
            statistics.median(turn_ms(p["raw calls/s"]) for p in out["rounds"]))


def spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def report_batch(batch: int, out: dict, cost: turn_cost.Cost, target: float) -> tuple[dict, list[float]]:
    """Print one batch size's comparison, round by round; (the turn ratio's verdict, the stations/s ratios)."""
    loop_ms, raw_ms = out["loop ms"], out["raw ms"] = medians_of(out)
    noop_ms = turn_ms(out["raw noop/s"])
    turn = judge(ratios_of(out), target)
    print(f"\nbatch {batch}: one fetch turn {loop_ms:.2f} ms of a worker | raw-call turn {raw_ms:.2f} ms | "
          f"no-op turn {noop_ms:.2f} ms (medians of {len(turn['rounds'])} rounds)")
    print(f"  one fetch turn / one raw-call turn = {said(turn)}, the median of the rounds' {spread(turn['rounds'])}")
    print(f"  one fetch turn / one no-op turn = {loop_ms / noop_ms:.1f} (no target: the no-op makes no API call)")
    print(f"  per fetch turn, counted: {cost.round_trips} round trips to Redis from the pool process "
          f"+ {cost.receipt} at receipt (main process), {cost.commands} commands inside Redis")
    return turn, [p["loop"]["fetch stations/s"] / (p["raw calls/s"] * batch) for p in out["rounds"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ch04_rate_limits.bench_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="stations per day at --batch, comma-separated")
    parser.add_argument("--small", type=int, default=SMALL, help=f"stations of the batch-1 day (default {SMALL})")
    parser.add_argument("--raw-tasks", type=int, default=2000, help="tasks per raw chain, at most (default 2000)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"stations per API request (default {BATCH})")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"loop days paired with a raw-call chain per batch size; the median ratio is judged "
                             f"(default {ROUNDS})")
    parser.add_argument("--pair", type=int, default=PAIR,
                        help=f"stations of each round's day at --batch (default {PAIR:,}; at most the largest size)")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds one size may take")
    parser.add_argument("--out", type=Path, default=None, help="a folder for scale.json (the figures)")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give whole numbers separated by commas, e.g. 1000,10000")
    if not 2 <= args.batch <= 1000:
        parser.error("--batch must be from 2 to 1000 stations (batch 1 is always measured)")
    if not sizes or sizes[0] < args.batch:
        parser.error(f"--sizes: each size must be at least one batch ({args.batch} stations)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pair < args.batch:
        parser.error(f"--pair must be at least one batch ({args.batch} stations)")
    if args.small < 2 * WORKERS:
        parser.error("--small must be at least 4 stations")
    settings = settings_mod.load()
    config = ApiConfig.from_settings(settings).changed({
        "rate": UNTHROTTLED.rate, "burst": UNTHROTTLED.burst, "max_batch": args.batch,
        "error_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0})
    os.environ.update(API_RATE=f"{config.rate:g}", API_BURST=str(config.burst))   # what the workers read at start
    logs = tempfile.mkdtemp(prefix="ch04-scale-logs-")
    print(f"{WORKERS} worker processes (prefork, 1 pool process each), window {pipeline.LOOP.width()}, "
          f"batches of 1 and {args.batch}, no API limit or faults; worker logs in {logs}", flush=True)
    with provide_redis(settings) as provided, \
            ApiServer(config.changed({"stations": max(max(sizes), args.small)}), host="127.0.0.1", port=0) as api:
        use_redis(provided.url)
        os.environ["API_URL"], os.environ["API_KEY"] = api.url, config.key   # before the workers start
        r = provided.client()
        timings = tempfile.mkdtemp(prefix="ch04-scale-pieces-")
        with settings_mod.environment({PIECES_ENV: timings}):   # batch 1's workers time their pieces
            one = run_batch(api, r, 1, [args.small], args, logs)
        many = run_batch(api, r, args.batch, sizes, args, logs)
        print("counting round trips and commands per turn ...", flush=True)
        costs = {1: counted(api, 1, min(400, args.small)),
                 args.batch: counted(api, args.batch, min(200 * args.batch, max(sizes)))}
        use_redis(provided.url)
    print(f"API capacity, batches of {args.batch} ...", flush=True)
    capacity = api_capacity(max(sizes), args.batch)
    print()
    print(f"batches of {args.batch}:")
    print(size_table(many["sizes"]))
    first, last = many["sizes"][sizes[0]], many["sizes"][sizes[-1]]
    linear = judge([last["ms/batch"] / first["ms/batch"]], TARGETS["linear"])
    print(f"\nms per batch at {sizes[-1]:,} / at {sizes[0]:,}: {said(linear)} (a linear cost)")
    print(f"batch 1, {args.small:,} stations: {one['sizes'][args.small]['stations/s']:.0f} stations/s, "
          f"answer key {'equal' if one['sizes'][args.small]['correct'] else 'NOT equal'}")
    print(f"fake API capacity at batches of {args.batch}: {capacity:.0f} stations/s")
    small, _ = report_batch(1, one, costs[1], TARGETS["turn at batch 1"])
    found = pieces(timings)
    print("  where a turn's time goes, timed in the workers (each piece's mean per turn, over the rounds):")
    print("    " + pieces_table(found).replace("\n", "\n    "))
    big, rates = report_batch(args.batch, many, costs[args.batch], TARGETS["turn at batch"])
    rate = judge(rates, TARGETS["stations/s at batch"], at_most=False)
    f = many["sizes"][sizes[-1]]
    print(f"  loop's fetch stations/s / the raw-call chain's = {said(rate)}, the median of the rounds' {spread(rates)} "
          f"(the whole day at {sizes[-1]:,}, fetch + transform + persist: {f['stations/s']:.0f} stations/s)")
    print("\nRedis's own time per command (INFO commandstats), top by time at the largest size:")
    print(commands_table(many["sizes"]))
    correct = all(f["correct"] for out in (one, many)
                  for f in [*out["sizes"].values(), *(p["loop"] for p in out["rounds"])])
    verdicts = {"linear cost": linear, "turn at batch 1": small, f"turn at batch {args.batch}": big,
                "stations/s": rate}
    met = {**{name: v["met"] for name, v in verdicts.items()}, "answer key": correct}
    print(f"\n{sum(met.values())} of {len(met)} verdicts met" + ("" if all(met.values()) else
          ": " + ", ".join(name for name, ok in met.items() if not ok) + " missed"))
    write_figures(args.out, "scale", {
        "batch": args.batch, "small": args.small, "workers": WORKERS, "rounds": args.rounds,
        "sizes": {stations: {key: f[key] for key in ("seconds", "stations/s", "turns", "ms/batch", "fetch stations/s",
                                                     "correct")} for stations, f in many["sizes"].items()},
        "api capacity": capacity, "verdicts": verdicts, "met": met,
        "turn": {str(batch): {"loop ms": out["loop ms"], "raw ms": out["raw ms"],
                              "noop ms": turn_ms(out["raw noop/s"]), "round trips": costs[batch].round_trips,
                              "receipt": costs[batch].receipt, "commands": costs[batch].commands}
                 for batch, out in ((1, one), (args.batch, many))},
        "µs per call": {name.removeprefix("cmdstat_"): {stations: f["commandstats"][name]["usec_per_call"]
                                                         for stations, f in many["sizes"].items()
                                                         if name in f["commandstats"]}
                        for name in ("cmdstat_evalsha", "cmdstat_exec")},
        "pieces": {"what": {name: what for _, name, what in PIECES}, **found}})
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
