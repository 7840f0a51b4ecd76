"""The pipeline's Redis client rides out a Redis restart and gives up in bounded time.

The outage tests run their own redis-server on a free loopback port, never the
session's, and stop every server they start by its PID.
"""
import socket
import threading
import time

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workshop import celery_app
from workshop.own_redis import OwnRedis


@pytest.fixture
def servers(tmp_path):
    own = OwnRedis(tmp_path)
    try:
        yield own
    finally:
        own.stop_all()


def test_the_redis_client_has_explicit_timeouts_and_a_retry_that_rides_out_a_restart(redis_server):
    client = celery_app._client(redis_server.url)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5.0, 2.0)
    assert (kwargs["socket_keepalive"], kwargs["health_check_interval"]) == (True, 10)
    assert kwargs["retry"] == Retry(ExponentialBackoff(cap=1.0, base=0.05), 8,
                                    supported_errors=(redis.ConnectionError, redis.TimeoutError))
    assert kwargs["retry_on_error"] == [redis.ConnectionError, redis.TimeoutError]
    assert client.ping() and client is celery_app.redis_client()

    # What each connection really uses, after redis-py's own merging.
    connection = client.connection_pool.make_connection()
    retry = connection.retry
    assert set(retry._supported_errors) == {redis.ConnectionError, redis.TimeoutError}
    assert socket.timeout not in retry._supported_errors  # see RETRY_ON: no retries within retries
    sleeps = [retry._backoff.compute(failure) for failure in range(1, retry.get_retries() + 1)]
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1]) and sum(sleeps) == pytest.approx(5.5)
    assert (connection.socket_timeout, connection.socket_connect_timeout) == (5.0, 2.0)
    assert connection.socket_keepalive and connection.health_check_interval == 10


def test_make_app_merges_the_socket_settings_that_kombu_reads_and_retries_publishing(redis_server):
    app = celery_app.make_app("kit-redis-client", broker_transport_options={"visibility_timeout": 600})
    options = app.conf.broker_transport_options
    assert options == {"visibility_timeout": 600, "socket_timeout": 5.0, "socket_connect_timeout": 2.0,
                       "socket_keepalive": True, "health_check_interval": 10}
    assert app.conf.task_publish_retry is True
    assert app.conf.task_publish_retry_policy == {"max_retries": 30, "interval_start": 0,
                                                  "interval_step": 0.5, "interval_max": 1}
    assert celery_app.make_app("kit-redis-client-2", task_publish_retry=False).conf.task_publish_retry is False
    # kombu's Redis channel takes them into the pool it publishes through.
    with app.connection_for_write() as connection:
        pool = connection.default_channel.pool
        assert (pool.connection_kwargs["socket_timeout"], pool.connection_kwargs["socket_connect_timeout"],
                pool.connection_kwargs["health_check_interval"]) == (5.0, 2.0, 10)
        assert not pool.connection_kwargs.get("retry_on_timeout")
    app.close()


def test_the_redis_client_rides_out_a_redis_restart(servers):
    first = servers.start()
    client = celery_app._client(servers.url)
    try:
        client.set("before", "1")
        servers.stop(first)
        restarted = threading.Timer(1.5, servers.start)
        restarted.start()
        try:
            started = time.monotonic()
            client.set("during", "1")   # issued while Redis is down
            took = time.monotonic() - started
        finally:
            restarted.join()
        assert 1.5 <= took < 5.5 + 1, f"took {took:.2f} s"
        assert client.get("during") == "1" and client.get("before") is None, "a new, empty Redis"
        print(f"rode out a 1.5 s outage in {took:.2f} s")
    finally:
        client.close()


def test_the_redis_client_gives_up_in_bounded_time_when_redis_is_gone(servers):
    server = servers.start()
    client = celery_app._client(servers.url)
    try:
        client.set("before", "1")
        servers.stop(server)
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            client.get("before")
        took = time.monotonic() - started
        assert 5.5 <= took < 15, f"took {took:.2f} s"
        print(f"gave up after {took:.2f} s")
    finally:
        client.close()


def test_a_command_cut_off_mid_flight_retries_reconnects_once_each_not_retries_within_retries(
        servers, monkeypatch):
    """The worst case: the reply never comes, and Redis's host then swallows every connect."""
    server = servers.start()
    client = celery_app._client(servers.url)
    try:
        client.ping()
        outcome = {}

        def blocked():
            started = time.monotonic()
            try:
                client.blpop("nothing", 3)
            except Exception as error:  # noqa: BLE001 - the test reads it
                outcome["error"] = error
            outcome["took"] = time.monotonic() - started

        caller = threading.Thread(target=blocked)
        caller.start()
        time.sleep(0.3)

        def black_hole(self):
            raise socket.timeout("timed out")  # what socket.create_connection raises on its connect timeout

        monkeypatch.setattr(redis.connection.Connection, "_connect", black_hole)
        servers.stop(server)                   # the BLPOP's connection drops with no reply
        caller.join(60)
        # One retry loop: 5.5 s of sleeps. socket.timeout in the list would nest a second
        # loop in each reconnect: 8 x 5.5 s more.
        assert isinstance(outcome.get("error"), redis.TimeoutError), outcome
        assert outcome["took"] < 5.5 + 3, f"took {outcome['took']:.2f} s"
    finally:
        monkeypatch.undo()
        client.close()
