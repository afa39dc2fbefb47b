"""What the browser tests share: the `twistd gamesvc` child process, users (a browser context and a page each)
and the console record of a page. The fixtures live in conftest.py."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TWISTD = str(Path(sys.executable).with_name("twistd"))
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1000, "height": 700}
PASSWORD = "correct horse battery"
# A seed whose first two-player game ends after 10 rolls (found by playing DiceRace with random.Random(seed)).
DICE_SEED = 2376
# Long enough that the server never rolls for a player in these tests unless a test wants it to.
TURN_SECONDS = 30
TIMEOUT_MS = 15_000

# The only console errors the client causes on purpose are Chromium's own logs of 4xx answers.
EXPECTED_4XX = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d\b")


def require_browser() -> bool:
    return os.environ.get("GAMESVC_REQUIRE_BROWSER", "") == "1"


def unavailable(reason: str) -> None:
    if require_browser():
        pytest.fail(f"{reason} (GAMESVC_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """GET (or POST a JSON body to) url; returns (status, parsed JSON, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


class Service:
    """`twistd -n gamesvc` as a child process on a free port, on the embedded store (like tests/test_tap.py's
    Twistd, plus the options the browser tests need: a dice seed and a turn length)."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = _free_port()
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
            time.sleep(0.1)  # polling a starting process, not waiting on the page under test

    def stop(self) -> None:
        """SIGTERM the service (it exits within 10 s), then SIGKILL if it did not."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def signup(self, username: str) -> dict[str, Any]:
        """Create an account over HTTP (no browser); returns the reply."""
        status, body, _ = http_json(self.url + "/api/signup", {"username": username, "password": PASSWORD})
        assert status == 200, body
        return body


class Console:
    """Console errors, uncaught page errors and CSP reports of one page."""

    def __init__(self, page: Any, name: str) -> None:
        self.name = name
        self.errors: list[str] = []
        self.expected_4xx: list[str] = []
        self.csp: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: Any) -> None:
        text = msg.text
        if "Content Security Policy" in text:
            self.csp.append(text)
        if msg.type == "error":
            (self.expected_4xx if EXPECTED_4XX.match(text) else self.errors).append(text)

    def assert_clean(self) -> None:
        assert not self.errors, f"console errors on {self.name}'s page: {self.errors}"
        assert not self.csp, f"CSP reports on {self.name}'s page: {self.csp}"


class User:
    """One person: a browser context (own cookies), one page, and that page's console record."""

    def __init__(self, browser: Any, service: Service, name: str, viewport: dict[str, int] = VIEWPORT) -> None:
        self.name = name
        self.service = service
        self.context = browser.new_context(base_url=service.url, viewport=viewport)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.console = Console(self.page, name)

    def tid(self, testid: str) -> Any:
        """The locator of [data-testid=testid]."""
        return self.page.get_by_test_id(testid)

    def open(self, path: str = "/") -> Any:
        return self.page.goto(path)

    def close(self) -> None:
        self.context.close()
