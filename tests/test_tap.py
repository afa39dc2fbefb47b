"""The twistd plugin: options from the command line and environment, and the real `twistd gamesvc` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.python import usage

from gamesvc.config import Settings
from gamesvc.service import GameService
from gamesvc.tap import Options, makeService

TWISTD = str(Path(sys.executable).with_name("twistd"))


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    options = Options(environ=environ or {})
    options.parseOptions(argv)
    return options.settings


def test_defaults() -> None:
    """With no options the defaults of the contract and the issues apply."""
    settings = parse([])
    assert settings.port == 5000 and settings.mongo_uri is None and settings.data_dir == "./gamesvc-data"
    assert settings.max_message_bytes == 65536 and settings.bcrypt_cost == 12
    assert settings.grace_seconds == 60 and settings.turn_seconds == 20 and settings.allowed_origins == ()


def test_command_line_beats_environment() -> None:
    """Environment variables set options; the command line overrides them."""
    env = {"GAMESVC_PORT": "6000", "GAMESVC_BCRYPT_COST": "10", "GAMESVC_BEHIND_TLS": "yes",
           "GAMESVC_ALLOWED_ORIGINS": "https://a.example, https://*.b.example"}
    settings = parse(["--port", "7000"], env)
    assert settings.port == 7000 and settings.bcrypt_cost == 10 and settings.behind_tls is True
    assert settings.allowed_origins == ("https://a.example", "https://*.b.example")
    settings = parse(["--allowed-origin", "http://x.example:8080", "--allowed-origin", "https://y.example"], env)
    assert settings.allowed_origins == ("http://x.example:8080", "https://y.example")


@pytest.mark.parametrize(
    "argv, env, fragment",
    [
        (["--port", "70000"], {}, "--port"),
        (["--port", "abc"], {}, "not a whole number"),
        (["--bcrypt-cost", "3"], {}, "outside 4..31"),
        (["--turn-seconds", "-1"], {}, "--turn-seconds"),
        (["--allowed-origin", "evil"], {}, "not an origin"),
        ([], {"GAMESVC_GRACE_SECONDS": "soon"}, "GAMESVC_GRACE_SECONDS"),
        ([], {"GAMESVC_BEHIND_TLS": "maybe"}, "GAMESVC_BEHIND_TLS"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], env: dict[str, str], fragment: str) -> None:
    """A bad value is a usage error naming the option (or variable) and what is wrong."""
    with pytest.raises(usage.UsageError, match=fragment.replace(".", r"\.")):
        parse(argv, env)


def test_make_service_does_no_io(tmp_path: Path) -> None:
    """makeService builds the service tree without starting anything: no child process, no port, no data dir."""
    data_dir = tmp_path / "data"
    options = Options(environ={})
    options.parseOptions(["--port", "0", "--data-dir", str(data_dir)])
    service = makeService(options)
    assert isinstance(service, GameService)
    assert service.port is None and not service.running
    assert service.embedded is not None and service.embedded.pid is None
    assert not data_dir.exists()


def test_twistd_lists_the_plugin() -> None:
    """After installation `twistd --help` lists gamesvc, and `twistd gamesvc --help` shows its options."""
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "gamesvc" in out
    out = subprocess.run([TWISTD, "gamesvc", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--mongo-uri" in out and "--allowed-origin" in out and "GAMESVC_TURN_SECONDS" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Twistd:
    """`twistd -n gamesvc` as a child process on a free port."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"twistd-{self.port}.log"
        self.process = subprocess.Popen(
            [TWISTD, "--pidfile=", "-n", "gamesvc", "--port", str(self.port), "--data-dir", str(data_dir),
             "--bcrypt-cost", "4"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=data_dir.parent,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if call(self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError("twistd did not become healthy:\n" + self.log.read_text())
            time.sleep(0.1)

    def stop(self) -> float:
        """SIGTERM the service; returns how long it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "gamesvc-data"


@pytest.mark.integration
def test_twistd_serves_and_data_survives_restart(data_dir: Path) -> None:
    """The real `twistd gamesvc` serves the page and API, exits within 10 s of SIGTERM, and keeps accounts across a restart."""
    first = Twistd(data_dir)
    try:
        with urllib.request.urlopen(first.url + "/", timeout=10) as page:
            assert page.status == 200
        status, body = call(first.url + "/api/signup", {"username": "Keeper", "password": "password1"})
        assert status == 200 and body["user"] == {"username": "Keeper", "wins": 0, "games": 0}
    finally:
        took = first.stop()
    # twistd re-raises the signal it stopped on, so a clean SIGTERM exit reads as -SIGTERM.
    assert first.process.returncode in (0, -signal.SIGTERM) and took < 10
    assert not list(data_dir.parent.glob("twistd.pid"))
    second = Twistd(data_dir)
    try:
        status, body = call(second.url + "/api/login", {"username": "keeper", "password": "password1"})
        assert status == 200 and body["user"]["username"] == "Keeper"
    finally:
        second.stop()
    # The embedded database stopped with the service: no launcher is left behind.
    leftover = subprocess.run(["pgrep", "-f", f"_nxlaunch --data-dir {data_dir}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
