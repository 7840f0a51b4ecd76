"""Embedded workers, real worker processes and beat: started, used, stopped, killed."""
import os
import signal
import time

import pytest

import kitapp
from workshop.target import pythonpath
from workshop.workers import EmbeddedBeat, EmbeddedWorker

TESTS = os.path.dirname(__file__)
# Worker processes import tests/kitapp.py, so the tests folder goes on their path.
ENV = {"PYTHONPATH": f"{TESTS}:{pythonpath()}"}


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to reap it.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_embedded_worker_runs_tasks_in_this_process_and_restarts(redis):
    worker = EmbeddedWorker(kitapp.app, pool="threads", concurrency=2)
    for _ in range(2):  # a notebook cell run twice
        worker.start()
        assert kitapp.record.delay("pids").get(timeout=10) >= 1
        worker.stop()
    assert set(redis.lrange("pids", 0, -1)) == {str(os.getpid())}
    assert not worker.running


def test_starting_a_second_embedded_worker_stops_the_first(redis):
    first = EmbeddedWorker(kitapp.app).start()
    second = EmbeddedWorker(kitapp.app).start()
    try:
        assert not first.running and second.running
        assert kitapp.record.delay("pids").get(timeout=10) == 1
    finally:
        second.stop()


def test_worker_processes_answer_run_tasks_and_stop_by_pid(worker_processes, redis):
    workers = worker_processes("kitapp", count=2, pool="prefork", concurrency=1, env=ENV)
    results = [kitapp.record.delay("pids") for _ in range(20)]
    assert [r.get(timeout=20) for r in results] and redis.llen("pids") == 20
    ran_in = set(map(int, redis.lrange("pids", 0, -1)))
    children = set(workers.pool_pids(0)) | set(workers.pool_pids(1))
    assert os.getpid() not in ran_in and ran_in <= children  # task code runs in the pool processes
    pids = workers.pids
    workers.stop()
    # Stragglers of the group get SIGKILL; wait for the kernel to finish them off.
    wait_for(lambda: not any(alive(pid) for pid in [*pids, *children]), timeout=10)


def test_sigkill_is_a_hard_crash_mid_task(worker_processes, redis):
    workers = worker_processes("kitapp", count=1, pool="prefork", concurrency=1, env=ENV)
    kitapp.sleep_then_record.delay("slow", 30)
    wait_for(lambda: redis.llen("slow:started") == 1)
    child = int(redis.lindex("slow:started", 0))
    workers.kill(0, signal.SIGKILL)
    wait_for(lambda: not workers.processes[0].alive())
    assert workers.processes[0].popen.returncode == -signal.SIGKILL
    assert redis.llen("slow") == 0  # the task never finished
    workers.stop()  # the orphaned pool child goes with the process group
    wait_for(lambda: not alive(child), timeout=10)


def test_beat_process_sends_the_schedule(worker_processes, beat_process, redis):
    worker_processes("kitapp", count=1, pool="solo", env=ENV)
    beat = beat_process("kitapp", env=ENV, max_interval=1)
    wait_for(lambda: redis.llen("kitapp:ticks") >= 3)
    pid = beat.pid
    beat.stop()
    assert not alive(pid)


def test_embedded_beat_sends_the_schedule(embedded_worker, redis):
    embedded_worker(kitapp.app, pool="threads", concurrency=2)
    with EmbeddedBeat(kitapp.app, max_interval=0.2):
        wait_for(lambda: redis.llen("kitapp:ticks") >= 2)


def test_a_worker_that_cannot_start_says_where_its_log_is(worker_processes):
    from workshop.workers import WorkerNotReady
    with pytest.raises(WorkerNotReady, match="exited with code"):
        worker_processes("no_such_module_here", count=1, env=ENV)


def test_worker_processes_without_a_redis_say_what_to_do(monkeypatch):
    from workshop.redis_provider import NoRedisError
    from workshop.workers import WorkerProcesses
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(NoRedisError, match="Worker processes need REDIS_URL"):
        WorkerProcesses("kitapp", env=ENV).start()


def test_the_control_app_for_pings_leaves_current_app_alone(redis_server, tmp_path):
    import celery
    from workshop.workers import WorkerProcesses
    before = celery.current_app._get_current_object()
    control = WorkerProcesses("ch04_rate_limits.app", log_dir=str(tmp_path))._control_app(redis_server.url)
    try:
        assert celery.current_app._get_current_object() is before and control is not before
        assert control.control.ping(timeout=0.2) == []   # still works as a control client: no workers here
    finally:
        control.close()
    assert celery.current_app._get_current_object() is before
