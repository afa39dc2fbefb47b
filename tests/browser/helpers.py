"""What the browser tests share: the `twistd gamesvc` child process, users (a browser context and a page each)
and the console record of a page. The fixtures live in conftest.py."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Twistd, http_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1000, "height": 700}
PASSWORD = "correct horse battery"
# A seed whose first room's two-player game ends after 10 rolls when its players type the dice seeds "alice-seed" and
# "bob-seed" (found by playing DiceRace with the fair dice of random.Random(seed).randbytes(32), docs/fairness.md).
DICE_SEED = 4769
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


class Service(Twistd):
    """The service for the browser tests (see tests.processes.Twistd), plus account creation over HTTP."""

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
