"""`make watch`: a live view of one day in the terminal, read from Redis and the API's /_stats only.

Flower shows tasks; this shows the pipeline's own state, where it lives: the stations in each
stage, the leases in flight and who holds them, the request rate against the API's limit, the
429s, the dead letters and why, the run's budget, the loop's owner and turns, the watchdog's
restarts. Nothing here imports a worker or sends a task: it only reads.

    read (Redis, /_stats) ──> Snapshot ──> model() ──> View ──> render() ──> rich

`read` costs two pipelined round trips a refresh at most (about twenty commands, all O(1) or
bounded: ZCARD, HLEN, GET, ranges with a LIMIT; never KEYS, SCAN or the HGETALL of a hash that
grows with the day: the dead letters are read whole only while they are few, else sampled, and
only when their count changed or every few seconds), and one GET of /_stats a second. `model` is a pure function of the
snapshot: what the tests check. `render` only lays it out.

Key names come from the chapters' keys modules (the reference tree): the watch reads what
chapters 2 to 5 write, under the same names.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import redis
import requests
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import settings as settings_mod, target

LOOPS = ("ch03", "ch04", "ch05")  # the looped chapters whose keys this reads; ch05 is chapter 6's loop too
LEASES_READ = 200                 # leases read per refresh (the soonest deadlines); ZCARD counts them all
DEAD_READ = 200                   # dead letters read for their reasons: all up to this many, a sample beyond
DEAD_REREAD = 5.0                 # seconds: dead letters are re-read when their count changes, or this often
API_EVERY = 1.0                   # seconds between two reads of /_stats (it copies the API's counters)
RATE_WINDOW = 3.0                 # seconds of /_stats samples the request rate is measured over
HOLDERS_SHOWN, DEAD_SHOWN = 6, 5
STAGES = ("pending", "in flight", "fetched", "transformed", "persisted", "dead-lettered")


# --------------------------------------------------------------------------- where things are

@dataclass(frozen=True)
class WatchKeys:
    """Every key the view reads for one loop and day, from the chapters' own keys modules."""

    loop: str
    day: str

    def __post_init__(self):
        from ch03_signals import keys as loop_keys
        from ch04_rate_limits import keys as day_keys
        object.__setattr__(self, "stages", day_keys.Keys(self.day))
        object.__setattr__(self, "loop_keys", loop_keys.LoopKeys(self.loop, self.day))
        object.__setattr__(self, "api", day_keys.ApiKeys())

    @property
    def dead_letters(self) -> str:
        """Chapter 4's dead-letter hash; chapter 3's loop sets poison aside in a hash of its own."""
        return self.loop_keys.poison if self.loop == "ch03" else self.stages.dead_letters

    @property
    def has_runs(self) -> bool:
        return self.loop == "ch05"   # only chapter 5's loop runs in runs with a budget

    def run_open(self) -> str:
        from ch05_reporting import keys as run_keys
        return run_keys.open_run(self.day)

    def run_sequence(self) -> str:
        from ch05_reporting import keys as run_keys
        return run_keys.sequence(self.day)

    def run_record(self, run: str) -> str:
        from ch05_reporting import keys as run_keys
        return run_keys.RunKeys(run).record


def watched_days(r: redis.Redis, loop: str) -> list[str]:
    """The days the loop's watchdog looks after (a small set: days with work), oldest first."""
    from ch03_signals import keys as loop_keys
    return sorted(r.smembers(loop_keys.watched(loop)))


def default_day(r: redis.Redis, loop: str) -> str:
    """The newest day the loop watches; else chapter 5's newest day with a run; else the settings' day."""
    days = watched_days(r, loop)
    if not days and loop == "ch05":
        from ch05_reporting import keys as run_keys
        days = sorted(r.smembers(run_keys.DAYS))
    return days[-1] if days else settings_mod.load().day.isoformat()


# --------------------------------------------------------------------------- what is read

@dataclass(frozen=True)
class ApiSample:
    """What /_stats said at one moment (`at`: seconds on the watcher's clock)."""

    at: float
    requests: int
    rate_limited: int
    day_requests: int = 0
    day_rate_limited: int = 0
    api_rate: float | None = None   # the bucket rate the API runs with (its config)

    @classmethod
    def of(cls, stats: dict, day: str, at: float) -> "ApiSample":
        by_day = (stats.get("by_day") or {}).get(day) or {}
        return cls(at, int(stats.get("requests", 0)), int(stats.get("rate_limited", 0)),
                   sum(int(n) for n in by_day.values()), int(by_day.get("429", 0)),
                   (stats.get("config") or {}).get("rate"))


@dataclass(frozen=True)
class Snapshot:
    """The raw values of one refresh, decoded, nothing computed yet."""

    day: str
    loop: str
    now_ms: float                                   # Redis's clock (TIME): lease deadlines are on it
    counts: dict[str, int]                          # "stations" and every stage of STAGES
    leases: list[tuple[str, float, str | None]] = field(default_factory=list)  # station, deadline ms, holder
    lock_owner: str | None = None
    lock_ttl_ms: int = 0
    turns: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    finished_at: float | None = None                # epoch seconds the loop last ran out of work
    stopping: bool = False
    limit: dict[str, str] = field(default_factory=dict)
    paused_until_ms: float | None = None
    dead: dict[str, str] = field(default_factory=dict)   # station -> JSON record (all, or a sample)
    run_id: str | None = None
    run_open: bool = False
    run: dict[str, str | None] = field(default_factory=dict)
    api: tuple[ApiSample, ...] = ()                 # oldest first
    api_error: str | None = None
    has_runs: bool = False


RUN_FIELDS = ("budget_micro", "spent_micro", "exhausted", "outcome", "started", "ended")


class Reader:
    """Reads one snapshot per call: two pipelined round trips to Redis at most, /_stats once a second."""

    def __init__(self, r: redis.Redis, keys: WatchKeys, api_url: str | None,
                 clock: Callable[[], float] = time.monotonic, api_every: float = API_EVERY):
        self.r, self.keys, self.api_url, self.clock, self.api_every = r, keys, api_url, clock, api_every
        self.samples: deque[ApiSample] = deque()
        self.http = requests.Session()   # one kept-alive connection: the API serves each connection in a thread
        self.api_error: str | None = None
        self._dead: dict[str, str] = {}
        self._dead_count: int | None = None
        self._dead_at = float("-inf")
        self.commands = 0   # Redis commands sent by the last read (the view shows its own cost)

    def read(self) -> Snapshot:
        k, lk, api = self.keys.stages, self.keys.loop_keys, self.keys.api
        p = self.r.pipeline(transaction=False)
        p.time()
        for key in (k.stations, k.pending, k.in_flight, k.fetched, k.transformed, k.persisted):
            p.zcard(key)
        p.hlen(self.keys.dead_letters)
        p.zrange(k.in_flight, 0, LEASES_READ - 1, withscores=True)    # the soonest deadlines
        p.get(lk.lock)
        p.pttl(lk.lock)
        p.hgetall(lk.turns)          # two fields per chain: as many as the loop's window, not the day
        p.get(lk.restarts)
        p.get(lk.finished)
        p.get(lk.stop)
        p.hgetall(api.limit)         # four or five fields
        p.get(api.pause)
        if self.keys.has_runs:
            p.get(self.keys.run_open())
            p.get(self.keys.run_sequence())
        self.commands = len(p)
        (now, stations, pending, in_flight, fetched, transformed, persisted, dead_count, leased, owner, ttl,
         turns, restarts, finished, stop, limit, pause, *run) = p.execute()
        run_open, run_seq = run or (None, None)
        run_id = run_open or (f"{self.keys.day}.{run_seq}" if run_seq else None)

        # Second round trip, only for what the first one named.
        p = self.r.pipeline(transaction=False)
        stations_leased = [station for station, _ in leased]
        if stations_leased:
            p.hmget(k.holders, stations_leased)
        if run_id:
            p.hmget(self.keys.run_record(run_id), RUN_FIELDS)
        reread = dead_count != self._dead_count or self.clock() - self._dead_at > DEAD_REREAD
        if reread:
            if dead_count > DEAD_READ:   # a sample: HRANDFIELD reads a bounded number, never the whole hash
                p.hrandfield(self.keys.dead_letters, DEAD_READ, withvalues=True)
            elif dead_count:
                p.hgetall(self.keys.dead_letters)   # at most DEAD_READ fields
        self.commands += len(p)
        answers = p.execute() if len(p) else []
        holders = answers.pop(0) if stations_leased else []
        record = dict(zip(RUN_FIELDS, answers.pop(0))) if run_id else {}
        if reread:
            found = answers.pop(0) if dead_count else {}
            if isinstance(found, list):   # HRANDFIELD WITHVALUES: field, value, field, value...
                found = dict(zip(found[::2], found[1::2]))
            self._dead, self._dead_count, self._dead_at = found, dead_count, self.clock()

        self._sample_api()
        seconds, micros = now
        return Snapshot(
            day=self.keys.day, loop=self.keys.loop, now_ms=seconds * 1000 + micros / 1000,
            counts={"stations": stations, "pending": pending, "in flight": in_flight, "fetched": fetched,
                    "transformed": transformed, "persisted": persisted, "dead-lettered": dead_count},
            leases=[(station, deadline, holder) for (station, deadline), holder in zip(leased, holders)],
            lock_owner=owner, lock_ttl_ms=max(int(ttl), 0), turns=turns, restarts=int(restarts or 0),
            finished_at=float(finished) if finished else None, stopping=stop is not None, limit=limit,
            paused_until_ms=float(pause) if pause else None, dead=dict(self._dead), run_id=run_id,
            run_open=run_open is not None, run=record, api=tuple(self.samples), api_error=self.api_error,
            has_runs=self.keys.has_runs)

    def _sample_api(self) -> None:
        if not self.api_url:
            return
        now = self.clock()
        if self.samples and now - self.samples[-1].at < self.api_every:
            return
        try:
            response = self.http.get(f"{self.api_url}/_stats", timeout=0.5)
            response.raise_for_status()
            sample = ApiSample.of(response.json(), self.keys.day, now)
            if self.samples and sample.requests < self.samples[-1].requests:
                self.samples.clear()   # the API restarted or was reset: its counters began again
            self.samples.append(sample)
            self.api_error = None
        except (requests.RequestException, ValueError) as error:
            self.api_error = f"{type(error).__name__}"
            self.samples.clear()   # a rate across an outage (or a restarted API) would be wrong
        while len(self.samples) > 2 and now - self.samples[1].at >= RATE_WINDOW:
            self.samples.popleft()


# --------------------------------------------------------------------------- what is shown

@dataclass(frozen=True)
class Holder:
    token: str
    stations: int
    seconds_left: float   # to the soonest deadline of its leases (negative: overdue, the reaper's)


@dataclass(frozen=True)
class View:
    day: str
    loop: str
    stations: int
    stages: list[tuple[str, int]]
    leases: int
    holders: list[Holder]
    overdue: int
    loop_state: str
    owner: str | None
    lock_ttl: float
    chains: dict[str, int]
    restarts: int
    requests_per_s: float | None
    limit_rate: float | None      # what the limiter enforces
    api_rate: float | None        # what the API publishes (or runs with)
    requests_day: int | None
    rate_limited: int | None
    rate_limited_day: int | None
    paused_for: float
    dead: int
    dead_reasons: list[tuple[str, int]]
    dead_sampled: int             # how many records the reasons are counted from
    dead_last: list[tuple[str, str, str]]   # station, reason, detail: newest first
    run_id: str | None
    run_open: bool
    budget: float | None          # USD; None: no budget
    spent: float | None
    exhausted: bool
    outcome: str | None
    api_error: str | None
    has_runs: bool


def _number(value, kind=float):
    try:
        return kind(float(value))
    except (TypeError, ValueError):
        return None


def model(s: Snapshot) -> View:
    """The numbers on screen, from one snapshot: a pure function (no I/O, no clock but the snapshot's)."""
    by_holder: dict[str, list[float]] = {}
    for _station, deadline, holder in s.leases:
        by_holder.setdefault(holder or "(none)", []).append(deadline)
    holders = sorted((Holder(token, len(deadlines), (min(deadlines) - s.now_ms) / 1000)
                      for token, deadlines in by_holder.items()), key=lambda h: h.seconds_left)

    records = []
    for station, raw in s.dead.items():
        try:
            record = json.loads(raw)
        except ValueError:
            record = {"reason": "unreadable", "detail": raw[:60]}
        records.append((station, record if isinstance(record, dict) else {"reason": "unreadable"}))
    for _, record in records:   # chapter 3's poison says where it was set aside, not why in a word
        record.setdefault("reason", f"poison in {record['segment']}" if "segment" in record else "?")
    reasons = Counter(str(record["reason"]) for _, record in records)
    newest = sorted(records, key=lambda item: (_number(item[1].get("at")) or 0.0, item[0]), reverse=True)

    if s.lock_owner:
        state = "stopping after the batch in flight" if s.stopping else "running"
    elif s.stopping:
        state = "stopped"
    elif s.finished_at:
        state = f"finished at {dt.datetime.fromtimestamp(s.finished_at).strftime('%H:%M:%S')}"
    else:
        state = "not running"

    rate = None
    if len(s.api) >= 2 and s.api[-1].at > s.api[0].at and s.api[-1].requests >= s.api[0].requests:
        rate = (s.api[-1].requests - s.api[0].requests) / (s.api[-1].at - s.api[0].at)
    last = s.api[-1] if s.api else None

    budget_micro = _number(s.run.get("budget_micro"), int)
    spent_micro = _number(s.run.get("spent_micro"), int)
    return View(
        day=s.day, loop=s.loop, stations=s.counts.get("stations", 0),
        stages=[(stage, s.counts.get(stage, 0)) for stage in STAGES],
        leases=s.counts.get("in flight", 0), holders=holders,
        overdue=sum(1 for _, deadline, _ in s.leases if deadline < s.now_ms),
        loop_state=state, owner=s.lock_owner, lock_ttl=s.lock_ttl_ms / 1000,
        chains={chain: int(n) for chain, n in sorted(s.turns.items()) if ":" not in chain},
        restarts=s.restarts, requests_per_s=rate,
        limit_rate=_number(s.limit.get("rate")),
        api_rate=_number(s.limit.get("api_rate")) or (last.api_rate if last else None),
        requests_day=last.day_requests if last else None,
        rate_limited=last.rate_limited if last else None,
        rate_limited_day=last.day_rate_limited if last else None,
        paused_for=max(0.0, (s.paused_until_ms - s.now_ms) / 1000) if s.paused_until_ms else 0.0,
        dead=s.counts.get("dead-lettered", 0), dead_reasons=reasons.most_common(), dead_sampled=len(records),
        dead_last=[(station, str(r.get("reason", "?")), str(r.get("detail", ""))) for station, r in
                   newest[:DEAD_SHOWN]],
        run_id=s.run_id, run_open=s.run_open,
        budget=None if budget_micro is None or budget_micro < 0 else budget_micro / 1e6,
        spent=None if spent_micro is None else spent_micro / 1e6,
        exhausted=s.run.get("exhausted") == "1", outcome=s.run.get("outcome"),
        api_error=s.api_error, has_runs=s.has_runs)


# --------------------------------------------------------------------------- how it looks

BAR_WIDTH = 36


def bar(part: float, whole: float, width: int = BAR_WIDTH, style: str = "green") -> Text:
    filled = 0 if whole <= 0 else round(width * min(max(part / whole, 0.0), 1.0))
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "grey50"))


STAGE_STYLES = {"pending": "yellow", "in flight": "cyan", "fetched": "blue", "transformed": "magenta",
                "persisted": "green", "dead-lettered": "red"}


def _short(token: str | None, keep: int = 13) -> str:
    return "—" if not token else token if len(token) <= keep + 6 else f"{token[:keep]}…{token[-4:]}"


def render(v: View, footer: str = "", wide: bool = False) -> Group:
    """The view as rich renderables; `wide` (120 columns and more) puts the panels two by two."""
    stages = Table(box=None, show_header=False, pad_edge=False, expand=False)
    stages.add_column(style="bold")
    stages.add_column(justify="right")
    stages.add_column()
    stages.add_column(justify="right")
    for stage, n in v.stages:
        share = f"{100 * n / v.stations:5.1f} %" if v.stations else ""
        stages.add_row(stage, f"{n:,}", bar(n, v.stations, style=STAGE_STYLES[stage]), share)
    stages_panel = Panel(stages, title=f"stages: {v.stations:,} stations discovered", box=box.ROUNDED)

    loop = Table.grid(padding=(0, 1))
    loop.add_column(style="bold")
    loop.add_column()
    loop.add_row("loop", f"{v.loop}: {v.loop_state}")
    loop.add_row("owner", f"{_short(v.owner)}" + (f" (lock {v.lock_ttl:.1f} s)" if v.owner else ""))
    loop.add_row("turns", "  ".join(f"chain {c}: {n:,}" for c, n in v.chains.items()) or "—")
    loop.add_row("watchdog", f"{v.restarts} restart{'s' if v.restarts != 1 else ''}")

    api = Table.grid(padding=(0, 1))
    api.add_column(style="bold")
    api.add_column()
    limit = v.api_rate or v.limit_rate
    if v.requests_per_s is None:
        rate_text = Text("measuring…" if v.api_error is None else f"/_stats unreachable ({v.api_error})")
    else:
        rate_text = Text(f"{v.requests_per_s:5.1f}/s ")
        if limit:
            rate_text.append_text(bar(v.requests_per_s, limit, 20, "green" if v.requests_per_s <= limit else "red"))
    api.add_row("requests", rate_text)
    limits = []
    if v.api_rate:
        limits.append(f"API {v.api_rate:g}/s")
    if v.limit_rate:
        limits.append(f"limiter {v.limit_rate:g}/s")
    api.add_row("limit", ", ".join(limits) or "— (no limit configured yet)")
    if v.rate_limited is not None:
        api.add_row("429s", f"{v.rate_limited:,} in all, {v.rate_limited_day:,} for {v.day}"
                            f" (of {v.requests_day:,} requests)")
    api.add_row("paused", f"{v.paused_for:.1f} s" if v.paused_for else "no")

    leases = Table(box=None, pad_edge=False, show_edge=False)
    leases.add_column("holder (lease token)")
    leases.add_column("stations", justify="right")
    leases.add_column("deadline in", justify="right")
    for h in v.holders[:HOLDERS_SHOWN]:
        leases.add_row(_short(h.token, 24), f"{h.stations:,}",
                       Text(f"{h.seconds_left:.1f} s", style="red" if h.seconds_left < 0 else ""))
    if len(v.holders) > HOLDERS_SHOWN:
        leases.add_row(f"… {len(v.holders) - HOLDERS_SHOWN} more holders", "", "")
    lease_title = f"leases in flight: {v.leases:,} stations, {len(v.holders)} holders" + (
        f", {v.overdue} overdue" if v.overdue else "")

    dead = Table.grid(padding=(0, 1))
    dead.add_column(style="bold", no_wrap=True)
    dead.add_column()
    sampled = f" (in a sample of {v.dead_sampled})" if v.dead_sampled < v.dead else ""
    dead.add_row("by reason", ", ".join(f"{reason} {n:,}" for reason, n in v.dead_reasons) + sampled or "—")
    for station, reason, detail in v.dead_last:
        dead.add_row(station, Text(f"{reason}: {detail}", no_wrap=True, overflow="ellipsis"))   # one line each

    if not v.has_runs:
        run_text = Text(f"none: chapter {int(v.loop[2:])}'s loop has no budget (chapter 5's runs do)")
    elif v.run_id is None:
        run_text = Text("no run on this day yet")
    else:
        state = "open" if v.run_open else f"closed: {v.outcome or '?'}"
        run_text = Text(f"run {v.run_id} ({state}): ")
        if v.budget is None:
            run_text.append(f"${v.spent or 0:.4f} spent, no budget")
        else:
            run_text.append(f"${v.spent or 0:.4f} of ${v.budget:.4f} ")
            run_text.append_text(bar(v.spent or 0, v.budget, 20, "red" if v.exhausted else "green"))
            if v.exhausted:
                run_text.append(" exhausted", style="bold red")

    header = Text(f"day {v.day} · loop {v.loop}" + (f" · {footer}" if footer else ""), style="bold")
    panels = [Panel(Group(loop, api), title="loop and API", box=box.ROUNDED),
              Panel(leases, title=lease_title, box=box.ROUNDED),
              Panel(dead, title=f"dead letters: {v.dead:,}", box=box.ROUNDED),
              Panel(run_text, title="run budget", box=box.ROUNDED)]
    if not wide:
        return Group(header, stages_panel, *panels)
    pairs = Table.grid(expand=True)   # a wide terminal (a projector): two columns, fewer lines
    pairs.add_column(ratio=1)
    pairs.add_column(ratio=1)
    pairs.add_row(panels[0], panels[1])
    pairs.add_row(panels[2], panels[3])
    return Group(header, stages_panel, pairs)


# --------------------------------------------------------------------------- the command

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workshop watch", description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=LOOPS, default=LOOPS[-1],
                        help="whose loop: ch03, ch04 or ch05 (chapter 5's, which chapter 6 runs too; the default)")
    parser.add_argument("--day", help="YYYY-MM-DD (default: the newest day the loop watches, followed as it "
                                      "changes; else the newest day with a run; else the settings' day)")
    parser.add_argument("--redis", help="Redis URL (default: REDIS_URL)")
    parser.add_argument("--api", help="the fake API's URL (default: API_URL, else API_HOST:API_PORT)")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between refreshes (default 0.3)")
    parser.add_argument("--once", action="store_true", help="print one frame (after a second) and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings_mod.load()
    if args.day:
        try:
            dt.date.fromisoformat(args.day)
        except ValueError:
            print(f"error: --day {args.day!r} is not a date; pass it as YYYY-MM-DD, e.g. --day 2026-01-15.",
                  file=sys.stderr)
            return 2
    if not args.interval > 0:
        print("error: --interval must be a number of seconds above 0, e.g. --interval 0.3.", file=sys.stderr)
        return 2
    url = args.redis or settings.redis_url
    if not url:
        print("error: make watch reads a running pipeline's Redis: set REDIS_URL (e.g. "
              "REDIS_URL=redis://127.0.0.1:6379/0 make watch) or pass --redis URL.", file=sys.stderr)
        return 2
    target.activate("solutions")   # the key names: chapters/ has the same keys modules
    r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
    try:
        r.ping()
    except redis.RedisError as error:
        print(f"error: no Redis answers at {url} ({error}); start the stack (make up) or pass --redis URL.",
              file=sys.stderr)
        return 2
    api_url = (args.api or settings.effective_api_url).rstrip("/")
    day = args.day or default_day(r, args.loop)
    reader = Reader(r, WatchKeys(args.loop, day), api_url)
    console = Console()

    def frame():
        nonlocal day, reader
        if not args.day and time.monotonic() - frame.followed > 5:   # follow the newest watched day
            frame.followed = time.monotonic()
            newest = default_day(r, args.loop)
            if newest != day:
                day, reader = newest, Reader(r, WatchKeys(args.loop, newest), api_url)
        started = time.perf_counter()
        view = model(reader.read())
        cost = f"refresh {(time.perf_counter() - started) * 1000:.1f} ms, {reader.commands} Redis commands"
        return render(view, f"{dt.datetime.now().strftime('%H:%M:%S')} · {cost}", wide=console.width >= 120)
    frame.followed = time.monotonic()

    if args.once:   # two reads a second apart: the request rate needs two samples of /_stats
        reader.read()
        time.sleep(reader.api_every)
        console.print(frame())
        return 0
    try:
        with Live(frame(), console=console, refresh_per_second=max(1.0, 1 / args.interval),
                  screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(args.interval)
                try:
                    live.update(frame(), refresh=True)
                except redis.RedisError as error:   # Redis restarting (or loading its data): say so, keep watching
                    live.update(Text(f"Redis at {url} does not answer ({error}); retrying…", style="bold red"),
                                refresh=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
