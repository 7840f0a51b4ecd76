"""Workers and beat for notebooks, the demo and tests.

Two kinds:
- `EmbeddedWorker`: a worker in a thread of this process (Celery's own test
  worker). Quick to start, reusable from a notebook cell; but it fires no
  `worker_ready` signal, and it shares this process's memory and signal handlers.
- `WorkerProcesses` and `BeatProcess`: real `celery worker` / `celery beat`
  processes, ready only when they answer, stopped by PID, killable with SIGKILL
  for crash tests. Task signals then run in the worker's pool processes, as in
  production.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from celery import Celery
from celery.beat import EmbeddedService
from celery.contrib.testing.worker import start_worker
from kombu.exceptions import OperationalError

from . import target as target_mod
from .redis_provider import NoRedisError


class WorkerNotReady(RuntimeError):
    """A worker or beat process did not come up; the message points at its log."""


class EmbeddedWorker:
    """A Celery worker in a background thread; `start()`/`stop()` or use it as a context manager.

    Only one runs per process at a time (Celery's worker state is global), so
    starting a new one stops the previous one: re-running a notebook cell is safe.
    """

    _running: "EmbeddedWorker | None" = None

    def __init__(self, app: Celery, pool: str = "threads", concurrency: int = 2,
                 loglevel: str = "WARNING", **worker_options):
        self.app, self.pool, self.concurrency = app, pool, concurrency
        self.loglevel, self.worker_options = loglevel, worker_options
        self._context = None

    def start(self) -> "EmbeddedWorker":
        if self._context is not None:
            return self
        if EmbeddedWorker._running is not None:
            EmbeddedWorker._running.stop()
        # No ping check: it needs celery.contrib.testing's ping task in every app.
        self._context = start_worker(self.app, pool=self.pool, concurrency=self.concurrency,
                                     loglevel=self.loglevel, perform_ping_check=False,
                                     shutdown_timeout=30, **self.worker_options)
        self._context.__enter__()
        EmbeddedWorker._running = self
        return self

    def stop(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            EmbeddedWorker._running = None
            context.__exit__(None, None, None)

    @property
    def running(self) -> bool:
        return self._context is not None

    def __enter__(self) -> "EmbeddedWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class EmbeddedBeat:
    """celery beat in a thread of this process, with its schedule file in a temp folder."""

    def __init__(self, app: Celery, max_interval: float = 0.5):
        self._dir = tempfile.TemporaryDirectory(prefix="workshop-beat-")
        self._service = EmbeddedService(app, max_interval=max_interval, thread=True,
                                        schedule_filename=os.path.join(self._dir.name, "schedule"))

    def start(self) -> "EmbeddedBeat":
        self._service.start()
        return self

    def stop(self) -> None:
        self._service.stop()
        self._service.join(10)
        self._dir.cleanup()

    def __enter__(self) -> "EmbeddedBeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def child_env(target: str | None = None, env: dict | None = None) -> dict:
    child = dict(os.environ)
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [target_mod.pythonpath(target),
                                                         os.environ.get("PYTHONPATH")]))
    child.update(env or {})
    return child


class ChildProcess:
    """One child process in its own process group, logging to a file."""

    def __init__(self, argv: list[str], env: dict, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # Its own session, so stopping it also stops its pool children, by its PID only.
        self.popen = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int, group: bool = False) -> None:
        if self.alive():
            (os.killpg if group else os.kill)(self.pid, sig)

    def stop(self, timeout: float) -> None:
        self.signal(signal.SIGTERM)  # warm shutdown: finish the task in hand
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the group we made: leftover pool children
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        self._log.close()


class WorkerProcesses:
    """`count` real `celery worker` processes for the app in `app_module` (e.g. "ch04_rate_limits.app")."""

    def __init__(self, app_module: str, count: int = 1, pool: str = "prefork", concurrency: int = 1,
                 *, target: str | None = None, env: dict | None = None, loglevel: str = "INFO",
                 extra_args: tuple[str, ...] = (), log_dir: str | None = None):
        self.app_module, self.count, self.pool, self.concurrency = app_module, count, pool, concurrency
        self.target, self.env, self.loglevel, self.extra_args = target, env, loglevel, extra_args
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="workshop-workers-"))
        run = uuid.uuid4().hex[:6]
        self.names = [f"worker{i}-{run}@127.0.0.1" for i in range(count)]
        self.processes: list[ChildProcess] = []

    def _argv(self, name: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", self.app_module, "worker", "-n", name,
                "-P", self.pool, "-c", str(self.concurrency), "-l", self.loglevel,
                "--without-gossip", "--without-mingle", *self.extra_args]

    def start(self, timeout: float = 60.0) -> "WorkerProcesses":
        env = child_env(self.target, self.env)
        if not env.get("REDIS_URL"):
            raise NoRedisError("Worker processes need REDIS_URL: call workshop.celery_app.use_redis(url) "
                               "(lab.setup() and the test fixtures do) or set it before starting them.")
        for name in self.names:
            log = self.log_dir / f"{name.split('@')[0]}.log"
            self.processes.append(ChildProcess(self._argv(name), env, log))
        try:
            self._wait_for_pings(env["REDIS_URL"], timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _control_app(self, redis_url: str) -> Celery:
        # Not current_app: a notebook's or test's own app stays the default for tasks it sends.
        return Celery("workshop-control", broker=redis_url, backend=redis_url, set_as_current=False)

    def _wait_for_pings(self, redis_url: str, timeout: float) -> None:
        control = self._control_app(redis_url)
        waiting, deadline = set(self.names), time.monotonic() + timeout
        try:
            while waiting:
                for i, process in enumerate(self.processes):
                    if not process.alive():
                        raise WorkerNotReady(f"worker {self.names[i]} exited with code "
                                             f"{process.popen.returncode}; see its log {process.log_path}:\n"
                                             + process.log()[-2000:])
                if time.monotonic() > deadline:
                    raise WorkerNotReady(f"workers {sorted(waiting)} did not answer a ping within {timeout:.0f} s; "
                                         f"see their logs in {self.log_dir}.")
                try:
                    replies = control.control.ping(destination=sorted(waiting), timeout=0.5) or []
                except (redis.ConnectionError, OperationalError):
                    # A pooled connection from before a Redis restart (kombu's pools are per process):
                    # dropped by the failure, the next ping takes a fresh one.
                    time.sleep(0.2)
                    continue
                for reply in replies:
                    waiting -= set(reply)
        finally:
            control.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def pool_pids(self, index: int, timeout: float = 2.0) -> list[int]:
        """PIDs of worker `index`'s pool processes (prefork children), as the worker reports them."""
        control = self._control_app(child_env(self.target, self.env)["REDIS_URL"])
        try:
            stats = control.control.inspect([self.names[index]], timeout=timeout).stats() or {}
        finally:
            control.close()
        return list(stats.get(self.names[index], {}).get("pool", {}).get("processes", []))

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to worker `index`'s main process: SIGKILL is a hard crash, no cleanup."""
        self.processes[index].signal(sig)

    def log(self, index: int) -> str:
        return self.processes[index].log()

    def stop(self, timeout: float = 20.0) -> None:
        # Ask all to stop first, so they shut down in parallel.
        for process in self.processes:
            process.signal(signal.SIGTERM)
        for process in self.processes:
            process.stop(timeout)
        self.processes = []

    def __enter__(self) -> "WorkerProcesses":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BeatProcess:
    """A real `celery beat` process for the app in `app_module`; ready once it logs that it started."""

    def __init__(self, app_module: str, *, target: str | None = None, env: dict | None = None,
                 max_interval: int = 1, log_dir: str | None = None):
        self.app_module, self.target, self.env, self.max_interval = app_module, target, env, max_interval
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="workshop-beat-"))
        self.process: ChildProcess | None = None

    def start(self, timeout: float = 30.0) -> "BeatProcess":
        argv = [sys.executable, "-m", "celery", "-A", self.app_module, "beat", "-l", "INFO",
                "-s", str(self.log_dir / "schedule"), "--pidfile=", "--max-interval", str(self.max_interval)]
        self.process = ChildProcess(argv, child_env(self.target, self.env), self.log_dir / "beat.log")
        deadline = time.monotonic() + timeout
        while "beat: Starting..." not in self.process.log():
            if not self.process.alive() or time.monotonic() > deadline:
                log = self.process.log()
                self.stop()
                raise WorkerNotReady(f"celery beat for {self.app_module} did not start; its log:\n{log[-2000:]}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)
            self.process = None

    def __enter__(self) -> "BeatProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

