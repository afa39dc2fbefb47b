"""The twistd plugin: options from the command line and environment, and the real `twistd gamesvc` process."""

from __future__ import annotations

import signal
import stat
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.python import usage

from gamesvc.config import Settings
from gamesvc.service import GameService
from gamesvc.tap import Options, makeService
from tests.processes import TWISTD, Twistd, http_json



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


def test_dice_seed_is_refused_behind_tls() -> None:
    """--dice-seed together with --behind-tls (from the command line or the environment) is a usage error."""
    with pytest.raises(usage.UsageError, match="dice-seed"):
        parse(["--dice-seed", "7", "--behind-tls"])
    with pytest.raises(usage.UsageError, match="dice-seed"):
        parse([], {"GAMESVC_DICE_SEED": "7", "GAMESVC_BEHIND_TLS": "yes"})
    assert parse(["--dice-seed", "7"]).dice_seed == 7


def test_dice_seed_logs_a_critical_warning_at_every_start(tmp_path: Path) -> None:
    """Starting a service with --dice-seed logs a critical event naming it; without it, no critical event."""
    from twisted.internet.task import Clock
    from twisted.logger import LogLevel, globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for seed in ("5", None):
            argv = ["--mongo-uri", "mongodb://127.0.0.1:1/", "--port", "0"] + (["--dice-seed", seed] if seed else [])
            service = GameService(Clock(), parse(argv))
            service._pool.start = lambda: None  # type: ignore[method-assign]  # no threads for this check
            service._connect_store = lambda: Deferred()  # type: ignore[method-assign]  # and no store
            service.startService()
            critical = [e for e in events if e.get("log_level") == LogLevel.critical]
            assert len(critical) == (1 if seed else 0)
            service.running = False
            events.clear()
    finally:
        globalLogPublisher.removeObserver(events.append)


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


def call(url: str, body: Any = None) -> tuple[int, Any]:
    status, parsed, _ = http_json(url, body)
    return status, parsed


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
    # The store's folder and files are private to the service's user.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files)
    second = Twistd(data_dir)
    try:
        status, body = call(second.url + "/api/login", {"username": "keeper", "password": "password1"})
        assert status == 200 and body["user"]["username"] == "Keeper"
    finally:
        second.stop()
    # The embedded database stopped with the service: no launcher is left behind.
    leftover = subprocess.run(["pgrep", "-f", f"_nxlaunch --data-dir {data_dir}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
