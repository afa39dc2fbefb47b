"""The real `twistd gamesvc` as a child process, and a blocking HTTP helper to talk to it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TWISTD = str(Path(sys.executable).with_name("twistd"))


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """GET (or POST a JSON body to) `url`, blocking; returns (status, parsed JSON, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


class Twistd:
    """`twistd -n gamesvc` on a free port with the embedded store in `data_dir`; `extra` options are appended."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"twistd-{self.port}.log"
        self.process = subprocess.Popen(
            [TWISTD, "--pidfile=", "-n", "gamesvc", "--port", str(self.port), "--data-dir", str(data_dir),
             "--bcrypt-cost", "4", *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=data_dir.parent,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_json(self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError("twistd did not become healthy:\n" + self.log.read_text())
            time.sleep(0.1)  # polling a starting process

    def stop(self) -> float:
        """SIGTERM the service (SIGKILL if it is still there after 15 s); returns how long it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started
