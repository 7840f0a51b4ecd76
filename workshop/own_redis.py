"""A redis-server of one's own, on one loopback port and data folder, to stop and start again: the
reliability tests and chapter 6 restart Redis mid-run with it. Every server is stopped by its PID; never
the session's Redis (nor a notebook's)."""
import signal
import subprocess
import time

import redis

from workshop.redis_provider import free_port


class OwnRedis:
    """`start()` a redis-server on this port and folder (again after `stop(server)`: a restart)."""

    def __init__(self, directory, appendonly: bool = False, options: tuple[str, ...] = ()):
        self.port, self.dir, self.appendonly, self.started = free_port(), str(directory), appendonly, []
        self.options = tuple(options)   # more redis-server flags, e.g. ("--enable-debug-command", "yes")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> subprocess.Popen:
        try:
            server = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes" if self.appendonly else "no", "--dir", self.dir, *self.options],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise RuntimeError("restarting Redis mid-run needs a redis-server of its own, and none is on PATH: "
                               "install it (apt-get install redis-server, brew install redis).") from None
        self.started.append(server)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)  # no retries: the probe's own loop
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    probe.ping()
                    return server
                except redis.ConnectionError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        self.stop(server)
                        raise RuntimeError(f"redis-server did not start on port {self.port} (data in {self.dir}); "
                                           "is redis-server installed (apt-get install redis-server)?")
                    time.sleep(0.02)
        finally:
            probe.close()

    @staticmethod
    def stop(server: subprocess.Popen) -> None:
        """SIGTERM (a clean shutdown: an append-only file holds every write), then wait for it."""
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def stop_all(self) -> None:
        for server in self.started:
            self.stop(server)
