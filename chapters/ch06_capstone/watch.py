# Exercise copy of solutions/ch06_capstone/watch.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""Watch it: Flower on the running workers, read through its HTTP API as well as in the browser.

The compose stack runs Flower on http://127.0.0.1:5555 (`make up`), which the stack's own
Jupyter reaches as http://flower:5555: the setting FLOWER_URL says where (STACK_URL). Anywhere
else `Flower` starts one on a loopback port for the Redis in REDIS_URL. Its API is
open without a login only because FLOWER_UNAUTHENTICATED_API is set and the port
is bound to 127.0.0.1: anything more exposed needs `--basic-auth` or OAuth.

- GET /api/workers?refresh=1 asks every worker (a broadcast: inspect stats,
  registered, conf, active_queues), no events needed; Flower asks for the task
  lists (active, reserved...) only when one worker is named (&workername=...);
- GET /api/tasks lists the tasks Flower has seen, from worker *events*: start the
  workers with `-E` (or broadcast `enable_events`), and Flower before the tasks.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from workshop import settings as settings_mod
from workshop.redis_provider import free_port
from workshop.workers import ChildProcess, WorkerNotReady, child_env

STACK_URL = settings_mod.load().flower_url


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"{url}/api/workers", timeout=timeout).ok
    except requests.RequestException:
        return False


def workers(url: str, timeout: float = 10.0) -> dict:
    """Flower's view of every worker, asked afresh."""
    response = requests.get(f"{url}/api/workers", params={"refresh": "1"}, timeout=timeout)
    response.raise_for_status()
    return response.json()


def tasks(url: str, timeout: float = 10.0) -> dict:
    """Every task Flower has seen (from events): task id -> its name, state, worker, times."""
    response = requests.get(f"{url}/api/tasks", timeout=timeout)
    response.raise_for_status()
    return response.json()


def summary(worker_view: dict, task_view: dict) -> dict[str, dict]:
    """One row per worker: pool processes, tasks processed (the worker's own count), active now, and the
    tasks Flower saw succeed and fail on it (events)."""
    # exercise 6.2: from Flower's /api/workers answer (worker -> {"stats": {"pool": {"processes": [...]}, "total": {task: n}}, "active": [...]}; "active" is there only when one worker was asked for, and a worker that did not answer in time lacks "stats": count what is not there as empty) and /api/tasks answer (id -> {"worker", "state"}), one dict per worker /api/workers lists: processes, processed, active, succeeded, failed
    raise NotImplementedError('exercise 6.2: from Flower\'s /api/workers answer (worker -> {"stats": {"pool": {"processes": [...]}, "total": {task: n}}, "active": [...]}; "active" is there only when one worker was asked for, and a worker that did not answer in time lacks "stats": count what is not there as empty) and /api/tasks answer (id -> {"worker", "state"}), one dict per worker /api/workers lists: processes, processed, active, succeeded, failed')


class Flower:
    """A Flower process for the app in `app_module` on a loopback port, stopped by its PID."""

    def __init__(self, app_module: str, *, env: dict | None = None, log_dir: str | None = None):
        self.app_module, self.port = app_module, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.log_dir = env or {}, Path(log_dir or tempfile.mkdtemp(prefix="ch06-flower-"))
        self.process: ChildProcess | None = None

    def start(self, timeout: float = 30.0) -> "Flower":
        environment = child_env(env={"FLOWER_UNAUTHENTICATED_API": "true", **self.env})
        argv = [sys.executable, "-m", "celery", "-A", self.app_module, "flower",
                "--address=127.0.0.1", f"--port={self.port}", "--persistent=False"]
        self.process = ChildProcess(argv, environment, self.log_dir / "flower.log")
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if not self.process.alive() or time.monotonic() > deadline:
                log = self.process.log()
                self.stop()
                raise WorkerNotReady(f"Flower for {self.app_module} did not answer on {self.url}; its log:\n"
                                     f"{log[-2000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(10)
            self.process = None

    def __enter__(self) -> "Flower":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
