"""REDIS_FAULTS: the pipeline's client loses replies on purpose, and redis-py really sends the command again."""
from __future__ import annotations

import logging

import pytest
import redis as redis_py

from workshop import celery_app, redis_faults, settings as settings_mod

# Counts a delivery once, whatever the number of runs: the id is recorded (SET NX) with the count.
COUNT_ONCE = """
if redis.call('SET', KEYS[1], 1, 'NX') then return redis.call('INCR', KEYS[2]) end
return tonumber(redis.call('GET', KEYS[2]))
"""
COUNT = "return redis.call('INCR', KEYS[1])"


@pytest.fixture
def faults(redis, monkeypatch):
    """`faults("lost-reply:1.0,seed:7")`: a new pipeline client under that setting, fresh draws and counts."""
    def use(value: str | None) -> redis_py.Redis:
        if value is None:
            monkeypatch.delenv("REDIS_FAULTS", raising=False)
        else:
            monkeypatch.setenv("REDIS_FAULTS", value)
        celery_app._client.cache_clear()   # one client per URL: build it again under the new setting
        redis_faults.reset()
        return celery_app.redis_client()

    yield use
    monkeypatch.delenv("REDIS_FAULTS", raising=False)
    celery_app._client.cache_clear()
    redis_faults.reset()


def test_off_by_default_the_client_keeps_redis_pys_connection(faults):
    client = faults(None)
    assert client.connection_pool.connection_class is redis_py.Connection
    assert client.incr("n") == 1 and client.incr("n") == 2
    assert redis_faults.stats() == {}


def test_a_lost_reply_runs_an_incr_twice_and_says_so_once(faults, redis, caplog):
    client = faults("lost-reply:1.0,seed:7")
    assert issubclass(client.connection_pool.connection_class, redis_faults.LostReplyMixin)
    with caplog.at_level(logging.WARNING, logger=redis_faults.__name__):
        assert client.incr("n") == 2, "the re-sent INCR answers; the first one's answer was lost"
    assert redis.get("n") == "2", "Redis ran the INCR twice"
    # redis-py's incr() is INCRBY key 1 on the wire: the fault names the command Redis ran.
    assert [r.getMessage() for r in caplog.records] == [
        "REDIS_FAULTS: lost the reply to INCRBY: the command ran; redis-py sends it again"]
    assert redis_faults.stats() == {"INCRBY": 1}
    assert redis_faults.injected(redis) == {"INCRBY": 1}, "counted in Redis, through a clean connection"


def test_a_script_that_records_an_id_answers_the_same_and_counts_once(faults, redis, caplog):
    client = faults("lost-reply:1.0,seed:7")
    count, count_once = client.register_script(COUNT), client.register_script(COUNT_ONCE)
    # Not loaded yet: EVALSHA answers NOSCRIPT (lost, sent again), SCRIPT LOAD, then EVALSHA runs (lost, again).
    assert count(keys=["plain"]) == 2
    assert redis.get("plain") == "2", "a counter without an id counts the re-send"
    assert count_once(keys=["delivery:abc", "once"]) == 1
    assert count_once(keys=["delivery:abc", "once"]) == 1, "a redelivery of the same id changes nothing"
    assert redis.get("once") == "1", "the id recorded with the count makes the second run harmless"
    # Loaded now: each further call loses one reply and runs twice.
    assert count(keys=["plain"]) == 4 and redis.get("plain") == "4"
    assert redis_faults.injected(redis) == {"EVALSHA": 6, "SCRIPT LOAD": 2} == redis_faults.stats()
    assert "REDIS_FAULTS: lost the reply to EVALSHA (on delivery:abc): the command ran; redis-py sends it again" in [
        r.getMessage() for r in caplog.records], "a script is named by its first key"


def test_a_lost_reply_runs_a_whole_pipeline_twice(faults, redis, caplog):
    client = faults("lost-reply:1.0,seed:7")
    with client.pipeline() as transaction:
        assert transaction.incr("a").incr("b").execute() == [2, 2]
    with client.pipeline(transaction=False) as pipeline:
        assert pipeline.incr("a").hincrby("h", "f", 5).execute() == [4, 10]
    assert redis.mget("a", "b") == ["4", "2"] and redis.hget("h", "f") == "10"
    assert redis_faults.injected(redis) == {"MULTI": 1, "PIPELINE": 1}
    assert [r.getMessage().split(":")[1] for r in caplog.records] == [
        " lost the reply to MULTI (INCRBY x2)", " lost the reply to PIPELINE (INCRBY HINCRBY)"]


def test_the_same_seed_loses_the_same_replies(faults, redis):
    def answers(value: str) -> list[int]:
        redis.delete("n")
        client = faults(value)
        return [client.incr("n") for _ in range(12)]

    first = answers("lost-reply:0.5,seed:7")
    steps = [b - a for a, b in zip([0] + first, first)]
    assert set(steps) == {1, 2}, "a lost reply runs its INCR once more, never twice more"
    assert redis_faults.stats() == {"INCRBY": steps.count(2)}
    assert answers("lost-reply:0.5,seed:7") == first
    assert answers("lost-reply:0.5,seed:8") != first
    assert answers("lost-reply:0,seed:7") == list(range(1, 13))


def test_the_fixtures_clients_are_never_faulty(faults, redis, redis_server):
    faults("lost-reply:1.0,seed:7")
    for name, client in (("fixture", redis), ("server", redis_server.client())):
        assert client.connection_pool.connection_class is redis_py.Connection
        assert client.incr(name) == 1 and redis.get(name) == "1"
    assert redis_faults.stats() == {}


@pytest.mark.parametrize("value", ["lost-reply:2,seed:7", "foo:1", "lost-reply:0.05", "lost-reply:0.05,seed:x"])
def test_a_bad_value_stops_with_one_sentence(faults, value):
    with pytest.raises(settings_mod.SettingsError) as raised:
        faults(value)
    assert str(raised.value) == (
        f"REDIS_FAULTS={value!r} is not valid: expected lost-reply:<share from 0 to 1>,seed:<whole number>, "
        "e.g. lost-reply:0.05,seed:7; set it to such a value or unset it.")


def test_the_kits_once_writes_write_once_when_sent_twice(faults, redis):
    from workshop import lua, progress
    client = faults("lost-reply:1.0,seed:7")
    progress.start(redis, "progress:x", 10)
    progress.advance(client, "progress:x", done=3, failed=1)
    assert progress.counters(redis, "progress:x") == {"total": 10, "done": 3, "failed": 1}
    assert lua.append_once(client, "log", {"a": 1}, 100) is not None
    lua.push_once(client, "list", ["x", "y"], keep=3)
    lua.push_once(client, "list", ["z"], keep=3)
    assert lua.incr_once(client, "restarts") == 1 and lua.incr_once(client, "restarts") == 2
    assert redis.xlen("log") == 1 and redis.lrange("list", 0, -1) == ["x", "y", "z"]
    assert redis_faults.injected(redis).get("EVALSHA", 0) >= 6, "every one of them was sent twice"
