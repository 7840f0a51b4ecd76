"""Celery settings that make a crash cost a retry, never a batch; and a check that the waits fit the broker.

- `task_acks_late`: the message is acknowledged after the task ran, not when a
  worker took it, so a task that never finished is still in the broker.
- `task_reject_on_worker_lost`: without it, Celery acknowledges the message of a
  task whose pool process was killed (SIGKILL, the OOM killer) and it is gone;
  with it, the message goes back to the queue and another process runs it.
- `worker_prefetch_multiplier = 1`: a worker reserves one message per process,
  not four. Not a hard bound: Celery raises the prefetch count by one for each
  message with an ETA or countdown it holds (a retry's backoff, a parked turn),
  up to `worker_eta_task_limit`; those stay unacknowledged, so a crash
  loses none of them: they come back after the visibility timeout.
- `worker_eta_task_limit`: the most messages a worker holds at once, running or
  waiting for their countdown. Without it, one worker may hoard every countdown
  message there is, each unacknowledged (a candidate for a second delivery after
  the visibility timeout) while other workers idle. Past it, messages wait in the
  broker, for any worker.

The catch with Redis as the broker: a message that stays unacknowledged longer
than the `visibility_timeout` is delivered again, to another worker, while the
first one still holds it. Countdowns count (a retry's message is held, unacked,
until its ETA), and so does a task's own waiting. So every wait this chapter can
make is checked against it, with room to spare.
"""
from __future__ import annotations

from celery import Celery

from . import circuit, retries, retry_after

CRASH_SAFE = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    # The prefetch count starts at the worker's concurrency and grows by one per countdown message held, up to
    # this. A loop has at most one message per batch of its window (a retry replaces the one that failed) and
    # one parked turn of its lead: on a worker of 8 processes, room for a window of 20 batches all waiting for
    # a retry, and a few leads' turns. Never set it below a worker's concurrency.
    "worker_eta_task_limit": 32,
}

ACQUIRE_TIMEOUT = 180.0   # seconds a task may wait for the limiter (a pause included) before it gives up the slot
TASK_TIME_LIMIT = 300     # seconds: Celery stops a task that runs longer (a hung request, a stuck wait)
MARGIN = 4                # the longest wait must fit this many times in the visibility timeout


class ConfigurationError(RuntimeError):
    """The Celery configuration would let the broker deliver a message twice; the message says the fix."""


def longest_unacked(request_timeout: float) -> float:
    """Seconds a fetch message can stay unacknowledged on purpose: the longest countdown, then a whole task.

    The longest countdown is a backoff (retries.CAP), after repeated 429s a Retry-After (retry_after.LONGEST),
    or the open circuit's pause (circuit.CAP).
    """
    pause = max(retry_after.LONGEST, circuit.CAP)
    if not pause < ACQUIRE_TIMEOUT < TASK_TIME_LIMIT:   # not an assert: it must hold under -O too
        raise ConfigurationError(
            f"the longest pause, max(retry_after.LONGEST, circuit.CAP) ({pause:g} s) < ACQUIRE_TIMEOUT "
            f"({ACQUIRE_TIMEOUT:g} s) < TASK_TIME_LIMIT ({TASK_TIME_LIMIT} s) does not hold: a pause must fit in a "
            "task's wait, and the wait in the task's time limit; change those constants so it does.")
    return longest_countdown() + max(TASK_TIME_LIMIT, ACQUIRE_TIMEOUT + request_timeout)


def longest_countdown() -> float:
    """Seconds of the longest retry countdown: a backoff, a Retry-After or the open circuit's pause."""
    return max(retries.CAP, retry_after.LONGEST, circuit.CAP)


def check(app: Celery, request_timeout: float) -> dict:
    """Raise ConfigurationError unless the app is crash-safe and its waits fit the visibility timeout."""
    conf = app.conf
    wrong = [f"{name}={conf.get(name)!r} (need {value!r})" for name, value in CRASH_SAFE.items()
             if conf.get(name) != value]
    if wrong:
        raise ConfigurationError(f"the app {app.main!r} is not crash-safe: {', '.join(wrong)}; "
                                 "make it with make_app(name, **safety.CRASH_SAFE).")
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    longest = longest_unacked(request_timeout)
    if longest * MARGIN > visibility:
        raise ConfigurationError(
            f"broker_transport_options visibility_timeout={visibility} s is too short: a fetch message may stay "
            f"unacknowledged {longest:g} s (a retry countdown of up to {longest_countdown():g} s, "
            f"then a task of up to "
            f"{TASK_TIME_LIMIT} s); set it to at least {longest * MARGIN:g} s, or shorten those waits.")
    return {"visibility_timeout": visibility, "longest_unacked": longest}
