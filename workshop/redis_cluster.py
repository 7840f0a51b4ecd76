"""A Redis Cluster of one's own: three masters from Debian's redis-server on loopback ports, no image to pull.

    cluster = LocalCluster(directory).start()   # 3 x redis-server --cluster-enabled yes, joined, cluster_state:ok
    cluster.url      # redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3: for STATE_REDIS_URL
    cluster.stop()   # each server by its PID

The tests (tests/conftest.py: `redis_cluster`) and `make bench-cluster` use it. It needs
redis-server and redis-cli on PATH (Debian's redis-server package brings both).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import redis

from .redis_provider import free_port
from .settings import CLUSTER_SCHEME

NEEDS = ("redis-server", "redis-cli")


def missing_tools() -> list[str]:
    return [tool for tool in NEEDS if shutil.which(tool) is None]


class LocalCluster:
    """`masters` redis-servers in cluster mode, each on a free loopback port with its files in `directory`."""

    def __init__(self, directory, masters: int = 3):
        self.dir, self.masters = str(directory), masters
        self.ports: list[int] = []
        self.servers: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"{CLUSTER_SCHEME}://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node(self, port: int) -> redis.Redis:
        """A plain client on one node (INFO, CLUSTER INFO: what that node alone says)."""
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def start(self) -> "LocalCluster":
        if missing_tools():
            raise RuntimeError(f"a local Redis Cluster needs {' and '.join(missing_tools())} on PATH: "
                               "install them (apt-get install redis-server, brew install redis).")
        try:
            for _ in range(self.masters):
                self._start_node(free_port())
            self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int) -> None:
        folder = os.path.join(self.dir, str(port))
        os.makedirs(folder, exist_ok=True)
        self.ports.append(port)
        self.servers.append(subprocess.Popen(
            # The bus port is port + 10000 unless given: past 65535 for most free ports, so a free one of its own.
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-port", str(free_port()),
             "--cluster-config-file", os.path.join(folder, "nodes.conf"), "--appendonly", "no", "--save", "",
             "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        self._wait(lambda: self._ask(port, lambda r: r.ping()), f"redis-server did not start on port {port} (files in {folder})")

    def _create(self) -> None:
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        done = subprocess.run(["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0",
                               "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create {' '.join(nodes)} failed: "
                               f"{(done.stderr or done.stdout).strip()[-500:]}")

    def _wait_ok(self) -> None:
        # Every node must see every slot served before a client may rely on the map it reads from any of them.
        for port in self.ports:
            self._wait(lambda: self._ask(port, lambda r: r.cluster("info").get("cluster_state") == "ok"),
                       f"the cluster did not reach cluster_state:ok on port {port}")

    def _ask(self, port: int, question):
        with self.node(port) as r:
            return question(r)

    def _wait(self, ready, failure: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if time.monotonic() > deadline or any(server.poll() is not None for server in self.servers):
                raise RuntimeError(failure)
            time.sleep(0.05)

    def flush(self) -> None:
        """Empty every master (a test's fresh start)."""
        for port in self.ports:
            self._ask(port, lambda r: r.flushall())

    def stop(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
        for server in self.servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.servers.clear()
