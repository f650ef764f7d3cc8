"""A real `redis-server` for tests: on a free loopback port, in its own folder, with an
append-only file (flushed when it shuts down), so it can be stopped and started again on the
same port with its data, as a deployment's Redis restarts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A loopback port nothing listens on now (the caller's server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, folder: Path) -> None:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client, for tests to look at what the server's store wrote."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")]
        argv += ["--appendonly", "yes", "--save", ""]
        self.process = subprocess.Popen(argv)
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            while True:
                assert self.process.poll() is None, self.log()
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, f"redis-server not up:\n{self.log()}"
                    time.sleep(0.05)

    def stop(self) -> None:
        """Shut the server down (SIGTERM: it closes its clients' connections and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
