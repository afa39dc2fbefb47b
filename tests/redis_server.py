"""A throwaway redis-server for the tests: a session fixture on a free loopback port, persistence off, stopped by PID.

Use the `redis_server` fixture (conftest.py exposes it); `restart()`/`stop()`/`start()` simulate an outage.
Without redis-server installed the tests that need it are skipped, unless GAMESVC_REQUIRE_REDIS=1 (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.processes import free_port

REDIS_SERVER = "redis-server"


class RedisServer:
    """One redis-server child process on 127.0.0.1:`port` that keeps nothing on disk."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.log = directory / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The URI a bus connects to."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (on the same port as before) and return once it accepts connections."""
        assert not self.running, "redis-server is already running"
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("redis-server did not start:\n" + (self.log.read_text() if self.log.exists() else ""))
            time.sleep(0.02)  # polling a starting process

    def stop(self) -> None:
        """Stop the server by its PID (SIGKILL after 10 s) and wait until it has exited."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port: every client is disconnected and nothing is kept."""
        self.stop()
        self.start()


def redis_executable() -> str:
    """The path of redis-server; skips the test when it is missing (fails instead when GAMESVC_REQUIRE_REDIS=1)."""
    found = shutil.which(REDIS_SERVER) or (f"/usr/bin/{REDIS_SERVER}" if os.path.exists(f"/usr/bin/{REDIS_SERVER}") else None)
    if found:
        return found
    if os.environ.get("GAMESVC_REQUIRE_REDIS") == "1":
        pytest.fail("redis-server is required (GAMESVC_REQUIRE_REDIS=1) but not installed")
    pytest.skip("redis-server is not installed (apt-get install redis-server); Redis tests skipped")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session; a test that stops it must start it again (`restart()` does both)."""
    server = RedisServer(redis_executable(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
