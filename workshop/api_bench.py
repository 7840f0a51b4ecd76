"""How fast is the fake Stations API? `python -m workshop bench-api --seconds 5 --clients 4 --batch 10`.

The API runs in its own process (as it does in the workshop), with no rate limit
and no faults, so the numbers are the server's own cost. Client threads with
keep-alive sessions hit three endpoints in turn, each for --seconds:

- ``/_health``:  the bare HTTP overhead of the same server, the baseline;
- ``/stations``: one page of the listing;
- ``/readings``: a batch of --batch stations, the request pipelines make.

The pipelines' chapters assume the API is never the bottleneck when unthrottled,
so the last line checks the readings throughput against 500 requests per second.
The API's own counters (/_stats) must agree with what the clients sent.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import requests

from workshop import stations

TARGET_RPS = 500
DAY = "2026-01-15"
KEY = "bench-key"
UNLIMITED = ["--rate", "1e9", "--burst", "1000000000"]
NO_FAULTS = ["--error-rate", "0", "--slow-rate", "0", "--malformed-rate", "0", "--glitch-rate", "0"]


@dataclass
class PhaseResult:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)   # seconds, successful requests only
    failures: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# --------------------------------------------------------------------------- the server process

def start_server(stations_count: int, max_batch: int) -> tuple[subprocess.Popen, str]:
    """Start the API in a child process on a free port; return it and its URL (read from its first line)."""
    command = [sys.executable, "-m", "workshop.api", "--host", "127.0.0.1", "--port", "0", "--key", KEY,
               "--stations", str(stations_count), "--max-batch", str(max_batch), *UNLIMITED, *NO_FAULTS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = _read_line_within(process, seconds=15)
    match = re.search(r"http://127\.0\.0\.1:\d+", first_line)
    if not match:
        stop_server(process)
        raise RuntimeError(f"the API did not start: {first_line.strip() or process.stderr.read().strip()}")
    return process, match.group(0)


def _read_line_within(process: subprocess.Popen, seconds: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return line[0] if line else ""


def stop_server(process: subprocess.Popen) -> None:
    """Stop the child by its PID: politely, then for good."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- the clients

def request_for(endpoint: str, n: int, batch: int, ids: list[str]) -> tuple[str, dict]:
    """The n-th request to `endpoint`: readings walk the station list batch by batch, pages cycle."""
    if endpoint == "/readings":
        start = n * batch
        return endpoint, {"stations": ",".join(ids[(start + i) % len(ids)] for i in range(batch)), "date": DAY}
    if endpoint == "/stations":
        pages = -(-len(ids) // 100)
        return endpoint, {"page": 1 + n % pages, "per_page": 100}
    return endpoint, {}


def run_phase(url: str, endpoint: str, clients: int, seconds: float, max_requests: int,
              batch: int, stations_count: int) -> PhaseResult:
    """`clients` threads, each with its own keep-alive session, until `seconds` pass or `max_requests` are sent."""
    result = PhaseResult(endpoint)
    lock = threading.Lock()
    per_client = max(1, max_requests // clients)
    ids = stations.station_ids(stations_count)
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        latencies, failures = [], 0
        with requests.Session() as session:
            session.headers["X-API-Key"] = KEY
            for sent in range(per_client):
                if time.perf_counter() >= deadline:
                    break
                # Clients interleave, so together they walk the stations without repeating each other.
                path, params = request_for(endpoint, sent * clients + number, batch, ids)
                started = time.perf_counter()
                response = session.get(url + path, params=params, timeout=10)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
        with lock:
            result.latencies.extend(latencies)
            result.failures += failures

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- report

def format_table(results: list[PhaseResult], batch: int) -> str:
    baseline = results[0].rate or 1.0
    lines = [f"{'endpoint':<22}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'vs health':>11}{'failed':>8}"]
    for r in results:
        name = f"{r.name} (batch {batch})" if r.name == "/readings" else r.name
        lines.append(f"{name:<22}{r.requests:>9}{r.rate:>9.0f}{r.percentile_ms(0.50):>9.2f}"
                     f"{r.percentile_ms(0.95):>9.2f}{r.rate / baseline:>10.2f}x{r.failures:>8}")
    return "\n".join(lines)


def check_stats(stats: dict, by_endpoint: dict[str, PhaseResult], batch: int) -> list[str]:
    """Compare the API's counters with what the clients sent; return the mismatches."""
    sent = by_endpoint["/stations"].requests + by_endpoint["/readings"].requests
    ok = len(by_endpoint["/stations"].latencies) + len(by_endpoint["/readings"].latencies)
    served_readings = len(by_endpoint["/readings"].latencies) * batch
    checks = [("requests", stats["requests"], sent),
              ("accepted", stats["accepted"], ok),
              ("station fetches", sum(stats["fetches"].values()), served_readings),
              ("rate_limited", stats["rate_limited"], 0)]
    for name, seen, expected in checks:
        print(f"  {name:<16} api {seen:>8}   clients {expected:>8}   {'ok' if seen == expected else 'MISMATCH'}")
    return [name for name, seen, expected in checks if seen != expected]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workshop bench-api", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="how long each endpoint is hit")
    p.add_argument("--clients", type=int, default=4, help="client threads, one keep-alive session each")
    p.add_argument("--batch", type=int, default=10, help="stations per /readings request")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per endpoint, whatever the time")
    p.add_argument("--stations", type=int, default=2000, help="stations the API lists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seconds <= 0 or args.clients < 1 or not 1 <= args.batch <= 1000 or args.max_requests < 1:
        print("error: --seconds must be above 0, --clients and --max-requests at least 1, "
              "and --batch from 1 to 1000.", file=sys.stderr)
        raise SystemExit(2)
    process, url = start_server(args.stations, max_batch=max(args.batch, 50))
    try:
        print(f"API pid {process.pid} on {url}; {args.clients} clients, {args.seconds:g} s per endpoint")
        phase = dict(clients=args.clients, seconds=args.seconds, max_requests=args.max_requests,
                     batch=args.batch, stations_count=args.stations)
        results = [run_phase(url, "/_health", **phase)]
        requests.post(url + "/_reset", timeout=5).raise_for_status()   # count only what follows
        results += [run_phase(url, endpoint, **phase) for endpoint in ("/stations", "/readings")]
        stats = requests.get(url + "/_stats", timeout=5).json()
    finally:
        stop_server(process)
    print(format_table(results, args.batch))
    print("API counters vs clients:")
    mismatches = check_stats(stats, {r.name: r for r in results}, args.batch)
    readings = results[-1]
    print(f"readings throughput: {readings.rate:.0f} req/s (target >= {TARGET_RPS})")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
