"""`make bench-cluster`: chapter 4's day with its state on one Redis, then on a 3-master Redis Cluster.

The broker is a plain Redis of its own in both (kombu's Redis transport has no cluster support); only
STATE_REDIS_URL changes. Per setup: stations/s, and per state node the Redis CPU (used_cpu_sys +
used_cpu_user, from INFO cpu) and the commands it ran (total_commands_processed, from INFO stats) during
the day. Days are spread over several dates so that a cluster can share them out: one day's keys carry one
hash tag, so one day lives in one slot, on one node.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import redis

from workshop import api as api_module, settings as settings_mod
from workshop.api import ApiConfig, ApiServer
from workshop.own_redis import OwnRedis
from workshop.redis_cluster import LocalCluster
from workshop.workers import WorkerProcesses

WORKERS = 2


def node_figures(ports: list[int]) -> dict[int, tuple[float, int]]:
    figures = {}
    for port in ports:
        with redis.Redis(port=port, decode_responses=True) as node:
            cpu, stats = node.info("cpu"), node.info("stats")
        figures[port] = (cpu["used_cpu_sys"] + cpu["used_cpu_user"], stats["total_commands_processed"])
    return figures


def run_days(state_url: str, ports: list[int], days: list[str], stations: int, timeout: float) -> dict:
    """The days kicked together and waited for: stations/s, and per node the Redis CPU and commands they cost."""
    os.environ["STATE_REDIS_URL"] = state_url
    from ch03_signals import pipeline as ch03_pipeline
    from ch04_rate_limits import pipeline
    from ch04_rate_limits.bench_scale import UNTHROTTLED
    from workshop.celery_app import redis_client
    r = redis_client()
    folder = tempfile.mkdtemp(prefix="bench-cluster-")
    for day in days:
        pipeline.reset(r, day)
        ch03_pipeline.discover(day, stations)
    api_module.forget_bodies()   # the API caches the bodies it made: each setup's days start with none made
    before, started = node_figures(ports), time.monotonic()
    for day in days:
        pipeline.kick(r, day, db=os.path.join(folder, f"{day}.sqlite3"), limit=UNTHROTTLED)
    ended = all(pipeline.LOOP.wait(r, day, timeout) for day in days)
    seconds = time.monotonic() - started
    after = node_figures(ports)
    done = sum(pipeline.outcome(r, day, os.path.join(folder, f"{day}.sqlite3"))["done"] for day in days)
    return {"ended": ended, "seconds": seconds, "done": done, "stations/s": done / seconds,
            "nodes": {port: (after[port][0] - before[port][0], after[port][1] - before[port][1]) for port in ports}}


def placement(url: str, days: list[str]) -> dict[str, int]:
    """day -> the port of the master that serves its slot."""
    from workshop.celery_app import _client
    return {day: _client(url).get_node_from_key(f"pipeline:{{{day}}}:pending").port for day in days}


def table(results: dict[str, dict]) -> str:
    lines = [f"{'state on':<22} {'stations':>8} {'s':>6} {'stations/s':>10}   per node: Redis CPU s, commands"]
    for name, f in results.items():
        nodes = "  ".join(f":{port} {cpu:4.2f} s {ops:>6,}" for port, (cpu, ops) in f["nodes"].items())
        lines.append(f"{name:<22} {f['done']:>8,} {f['seconds']:>6.1f} {f['stations/s']:>10.0f}   {nodes}"
                     + ("" if f["ended"] else "   (timed out)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=2000, help="stations per day (default 2000)")
    parser.add_argument("--days", type=int, default=3, help="days run at once (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds the days may take")
    parser.add_argument("--out", type=Path, default=None, help="a folder for cluster.json (the figures)")
    args = parser.parse_args(argv)
    settings = settings_mod.load()
    config = ApiConfig.from_settings(settings).changed({
        "rate": 1e6, "burst": 1_000_000, "max_batch": 50, "stations": args.stations,
        "error_rate": 0.0, "slow_rate": 0.0, "malformed_rate": 0.0})
    os.environ.update(API_RATE="1000000", API_BURST="1000000", API_MAX_BATCH="50", BATCH_SIZE="50")
    days = [f"2026-02-{d:02d}" for d in range(1, args.days + 1)]
    work = tempfile.mkdtemp(prefix="bench-cluster-")
    broker, single = OwnRedis(os.path.join(work, "broker")), OwnRedis(os.path.join(work, "single"))
    for own in (broker, single):
        os.makedirs(own.dir, exist_ok=True)
    cluster = LocalCluster(os.path.join(work, "cluster"))
    results = {}
    print(f"{WORKERS} worker processes (prefork, 1 each), {args.days} days of {args.stations:,} stations at once, "
          "batches of 50, no API limit; the broker on a Redis of its own", flush=True)
    broker.start(), single.start(), cluster.start()
    try:
        os.environ["REDIS_URL"] = broker.url
        with ApiServer(config, host="127.0.0.1", port=0) as api:
            os.environ["API_URL"], os.environ["API_KEY"] = api.url, config.key
            for name, url, ports in (("1 Redis", single.url, [single.port]),
                                     ("cluster of 3 masters", cluster.url, cluster.ports)):
                os.environ["STATE_REDIS_URL"] = url   # before the workers start: they read it
                with WorkerProcesses("ch04_rate_limits.app", WORKERS, pool="prefork", concurrency=1,
                                     loglevel="WARNING", log_dir=work):
                    print(f"{name}: a warm-up day of 200 stations, then the days ...", flush=True)
                    run_days(url, ports, ["2026-03-01"], 200, args.timeout)   # imports, connections, scripts
                    results[name] = run_days(url, ports, days, args.stations, args.timeout)
        where = placement(cluster.url, days)
    finally:
        cluster.stop()
        broker.stop_all(), single.stop_all()
    print()
    print(table(results))
    print("on the cluster, each day's keys (hash tag {day}) live on one node: "
          + ", ".join(f"{day} -> :{port}" for day, port in where.items()))
    print("the API's limiter keys ({stations-api}) are on one node too: every fetch of every day asks that node")
    complete = {name: f["ended"] and f["done"] == args.days * args.stations for name, f in results.items()}
    if args.out is not None:   # for `make figures`: the prose quotes these, never typed in
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cluster.json").write_text(json.dumps({
            "days": args.days, "stations": args.stations, "workers": WORKERS, "placement": where,
            "results": {name: {**f, "complete": complete[name]} for name, f in results.items()}}, indent=1) + "\n")
    return 0 if all(complete.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
