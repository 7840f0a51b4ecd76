"""The test harness every chapter's tests use.

- `--target solutions|chapters` (or WORKSHOP_TARGET) picks the tree that
  `import chNN_*` imports: the reference solutions by default, or your exercises.
- One Redis for the session (REDIS_URL, else testcontainers, else redis-server),
  emptied before each test that asks for it.
- The fake Stations API with a fault profile, embedded workers, real worker and
  beat processes: all stopped after the test that started them.
- Against chapters/, a chapter's tests stop at once while an earlier chapter's
  exercise is still a stub: the first test fails with one sentence naming it and
  the catch-up command, the others are skipped (workshop/catch_up.py). A test
  marked `@pytest.mark.exercises("3.3", ...)` fails at once while one of them is
  still a stub, with one sentence naming it.
- `--exercise N.M` runs exercise N.M's own tests and nothing else: those marked
  `@pytest.mark.exercise("N.M")` (a verdict in seconds; a whole day belongs to the
  chapter, not to one exercise). Only the chapter's test files are collected.
"""
from __future__ import annotations

import collections
import functools
import os
import re

import pytest
import redis as redis_py

from workshop import catch_up, exercises as exercises_mod, redis_faults, settings as settings_mod, target
from workshop.api import ApiConfig, ApiServer
from workshop.celery_app import use_redis
from workshop.redis_provider import NoRedisError, provide_redis
from workshop.workers import BeatProcess, EmbeddedWorker, WorkerProcesses



def pytest_configure(config):
    try:
        chosen = config.getoption("--target") or settings_mod.load().workshop_target
    except settings_mod.SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    # Worker processes and notebook kernels started by the tests import the same tree.
    os.environ["WORKSHOP_TARGET"] = chosen
    config.workshop_target = chosen
    target.activate(chosen)
    config.addinivalue_line("markers", "earlier_chapter_unfinished(sentence): an earlier exercise is a stub")
    config.addinivalue_line("markers", "exercises(*ids): the exercises a test checks; against chapters/, "
                                       "a stub among them fails it at once, naming the exercise")
    config.addinivalue_line("markers", "exercise(id): one of exercise `id`'s own tests: `pytest --exercise id` "
                                       "runs these; it also fails at once while `id` is a stub")
    config.addinivalue_line("markers", "wrong_attempt(id): runs the usual mistake at exercise `id` and checks its "
                                       "verdict names what is wrong (make bench-feedback times it)")
    config.workshop_exercise = _chosen_exercise(config)


def _chosen_exercise(config) -> str | None:
    """The exercise `--exercise` names, checked against the exercises the solutions hold."""
    chosen = config.getoption("--exercise")
    if chosen is None:
        return None
    known = list(dict.fromkeys(e.id for e in exercises_mod.list_exercises(target.ROOT)))   # parts: one id
    if chosen not in known:
        raise pytest.UsageError(f"--exercise {chosen}: there is no exercise {chosen}; pick one of "
                                f"{', '.join(known)} (its id is in the comment `exercise N.M` in chapters/).")
    return chosen


def exercise_ids(item) -> list[str]:
    """The exercises a test checks: its `exercises(...)` and `exercise(...)` marks."""
    return [i for name in ("exercises", "exercise") for mark in item.iter_markers(name) for i in mark.args]


def pytest_ignore_collect(collection_path, config):
    """With --exercise N.M, only chapter N's test files are collected (quick, and nothing else is run)."""
    chosen = getattr(config, "workshop_exercise", None)
    if chosen is None or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    match = re.match(r"test_ch(\d\d)_", collection_path.name)
    return not (match and int(match.group(1)) == int(chosen.split(".")[0]))


def _chapter_of(item) -> int | None:
    match = re.match(r"test_ch(\d\d)_", item.path.name)
    return int(match.group(1)) if match else None


def pytest_collection_modifyitems(config, items):
    """--exercise: keep that exercise's own tests. Against chapters/: mark the tests of a chapter whose earlier
    chapters still hold a stub."""
    chosen = config.workshop_exercise
    if chosen is not None:
        own = [item for item in items if any(chosen in mark.args for mark in item.iter_markers("exercise"))]
        if not own:
            raise pytest.UsageError(f"--exercise {chosen}: no test is marked as its own "
                                    f"(@pytest.mark.exercise({chosen!r})); run the chapter's tests instead.")
        config.hook.pytest_deselected(items=[item for item in items if item not in own])
        items[:] = own
    if config.workshop_target != "chapters":
        return
    sentences: dict[int, str | None] = {}
    for item in items:
        chapter = _chapter_of(item)
        if chapter is not None and chapter not in sentences:
            stubs = catch_up.unfinished(target.ROOT, before=chapter)
            sentences[chapter] = catch_up.refusal(stubs, chapter) if stubs else None
        if chapter is not None and sentences[chapter]:
            item.add_marker(pytest.mark.earlier_chapter_unfinished(sentences[chapter]))


_told: set[str] = set()   # test files whose first test said it already


def pytest_runtest_setup(item):
    mark = item.get_closest_marker("earlier_chapter_unfinished")
    if mark is not None:
        if item.path.name in _told:
            pytest.skip("not run: an earlier chapter's exercise is not done yet (see the first failure)")
        _told.add(item.path.name)
        pytest.fail(mark.args[0], pytrace=False)
    if item.config.workshop_target == "chapters":
        # Before any fixture: a stub would otherwise surface as a worker that never finishes.
        ids = exercise_ids(item)
        left = [stub for stub in _stubs() if stub.id in ids]
        if left:
            pytest.fail(catch_up.not_done(left), pytrace=False)


@functools.cache
def _stubs() -> tuple:
    return tuple(catch_up.unfinished(target.ROOT))


def pytest_report_header(config):
    return f"workshop target: {config.workshop_target} ({target.tree(config.workshop_target)})"


_redis_description: list[str] = []
# Under REDIS_FAULTS: the replies the pipeline's client lost on purpose, by command, over the session. Every
# process counts them in the session's Redis (workshop/redis_faults.py); moved here before each flush.
_faults_injected: collections.Counter = collections.Counter()
_session_redis: list = []   # the session's Redis client while it runs


def _collect_faults() -> None:
    if not os.environ.get("REDIS_FAULTS") or not _session_redis:
        return
    try:
        with _session_redis[0].pipeline() as taking:
            counts, _ = taking.hgetall(redis_faults.INJECTED).delete(redis_faults.INJECTED).execute()
    except redis_py.RedisError:   # a test stopped or restarted it: its counts are gone, the test's outcome stands
        return
    _faults_injected.update({name: int(count) for name, count in counts.items()})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    _collect_faults()   # after the test's fixtures, module-scoped workers included, have stopped


def pytest_sessionfinish(session):
    # Under pytest-xdist (`make test` runs two workers) each worker has a Redis of its own: it tells the
    # controller which, so that the summary still says where the tests ran (and, under REDIS_FAULTS, how many
    # replies were lost on purpose).
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["redis"] = list(_redis_description)
        session.config.workeroutput["redis_faults"] = dict(_faults_injected)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for line in getattr(node, "workeroutput", {}).get("redis", []):
        if line not in _redis_description:
            _redis_description.append(line)
    _faults_injected.update(getattr(node, "workeroutput", {}).get("redis_faults", {}))


def pytest_terminal_summary(terminalreporter):
    for line in _redis_description:
        terminalreporter.write_line(line)
    if os.environ.get("REDIS_FAULTS"):
        counts = ", ".join(f"{name} {count}" for name, count in _faults_injected.most_common())
        terminalreporter.write_line(
            f"REDIS_FAULTS={os.environ['REDIS_FAULTS']}: {sum(_faults_injected.values())} replies lost on purpose "
            f"(each of those requests ran twice), by command: {counts or 'none'}")


@pytest.fixture(scope="session")
def redis_server():
    """The session's Redis; every worker and app started by the tests uses it."""
    try:
        provided = provide_redis(announce=False)
    except NoRedisError as error:
        pytest.exit(str(error), returncode=3)
    _redis_description.append(provided.describe())
    use_redis(provided.url)
    _session_redis.append(provided.client())
    yield provided
    _collect_faults()
    _session_redis.pop().close()
    provided.stop()


@pytest.fixture
def redis(redis_server):
    """A client (str responses) on an empty Redis."""
    client = redis_server.client()
    _collect_faults()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings():
    return settings_mod.load()


@pytest.fixture
def fake_api(monkeypatch):
    """Start the fake Stations API with `fake_api(**profile)`; API_URL/API_KEY point at it.

    Profile keys are ApiConfig fields (rate, burst, error_rate, slow_rate, ...);
    the rest come from the settings. Stopped after the test.
    """
    servers = []

    def start(**profile) -> ApiServer:
        config = ApiConfig.from_settings(settings_mod.load())
        server = ApiServer(config.changed(profile), port=0).start()
        servers.append(server)
        monkeypatch.setenv("API_URL", server.url)
        monkeypatch.setenv("API_KEY", server.config.key)
        return server

    yield start
    for server in servers:
        server.stop()


def _starting(make):
    """A fixture body: `start(*args, **options)` makes and starts one thing; all are stopped after the test."""
    started = []

    def start(*args, **options):
        thing = make(*args, **options).start()
        started.append(thing)
        return thing

    yield start
    for thing in reversed(started):
        thing.stop()


@pytest.fixture
def embedded_worker(redis):
    """Start an in-thread worker with `embedded_worker(app, pool=..., concurrency=...)`."""
    yield from _starting(EmbeddedWorker)


@pytest.fixture
def worker_processes(redis, tmp_path):
    """Start real workers with `worker_processes("chNN_x.app", count=2, pool="prefork")`.

    They inherit this process's environment (REDIS_URL, API_URL, WORKSHOP_TARGET)
    plus `env`; their logs are in the test's tmp_path.
    """
    yield from _starting(functools.partial(WorkerProcesses, log_dir=str(tmp_path)))


@pytest.fixture
def beat_process(redis, tmp_path):
    """Start a real `celery beat` with `beat_process("chNN_x.app")`."""
    yield from _starting(functools.partial(BeatProcess, log_dir=str(tmp_path)))


def pytest_assertrepr_compare(config, op, left, right):
    """`==` between summaries or findings fails with the station, hour and field that differ (tests/explain.py)."""
    if op != "==":
        return None
    import explain   # tests/ is on sys.path (rootdir conftest)
    said = explain.compared(left, right)
    return None if said is None else [f"{type(left).__name__} == {type(right).__name__} differs: {said}"]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real Redis Cluster for the session: three masters from redis-server on free loopback ports, joined by
    `redis-cli --cluster create`, stopped by their PIDs after. `.url` is a STATE_REDIS_URL; `.flush()` empties it."""
    from workshop.redis_cluster import LocalCluster, missing_tools
    if missing_tools():
        pytest.skip(f"a Redis Cluster needs {' and '.join(missing_tools())} on PATH (apt-get install redis-server)")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()
