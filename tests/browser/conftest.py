"""Fixtures of the browser tests: the real `twistd gamesvc` process, one headless Chromium, pages that record
their console errors, and screenshots.

Chromium is Debian's /usr/bin/chromium, driven by Playwright's sync API; Playwright never downloads a browser.
Without that Chromium (or without Playwright) every test here is skipped with the reason, unless
GAMESVC_REQUIRE_BROWSER=1, which turns the skip into a failure (CI sets it).

Playwright's sync API and pytest-twisted in one process: pytest-twisted runs every test function inside its
reactor greenlet (from a reactor.callLater), while fixtures run in the main greenlet. Each sync Playwright call
remembers the greenlet that made it, switches to Playwright's dispatcher greenlet (an asyncio loop of its own) and
switches back to that same greenlet when the answer is in, so it works from either greenlet. Playwright's only
guard, "no running asyncio loop", holds because pytest-twisted runs Twisted's default (epoll) reactor. While a
browser test runs the reactor does not tick, which is harmless: the service under test is a child process, and
these tests use neither the reactor nor pytest_twisted. No thread or subprocess is needed (but see `browser` on
why Playwright is stopped at the end of the module).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.browser.helpers import (
    ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DICE_SEED, DOCS_SCREENSHOTS, TURN_SECONDS, VIEWPORT, Service, User,
    unavailable,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium per module (each user gets a fresh context). Module scope, not session: between
    its calls Playwright leaves its asyncio loop marked as running in this thread, so it is stopped before the
    rest of the suite runs."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def service(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service (after the browser, so a missing Chromium skips before any process starts)."""
    base = tmp_path_factory.mktemp("browser-service")
    svc = Service(base / "data", "--dice-seed", str(DICE_SEED), "--turn-seconds", str(TURN_SECONDS))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def users(browser: Any, service: Service) -> Iterator[Callable[..., User]]:
    """A factory of Users; every context is closed at the end of the test."""
    made: list[User] = []

    def make(name: str, viewport: dict[str, int] = VIEWPORT) -> User:
        user = User(browser, service, name, viewport)
        made.append(user)
        return user

    yield make
    for user in made:
        user.close()


@pytest.fixture(scope="session")
def screenshot() -> Callable[..., Path]:
    """Save a PNG of a page's viewport, from the top, as test-artifacts/screenshots/NAME.png (gitignored); with
    GAMESVC_UPDATE_SCREENSHOTS=1 the ones marked docs=True also go to docs/screenshots/NAME.png (the README's)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    update_docs = os.environ.get("GAMESVC_UPDATE_SCREENSHOTS", "") == "1"

    def save(page: Any, name: str, docs: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.evaluate("window.scrollTo(0, 0)")  # clicks and focus scroll; show each view from its top
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        if update_docs and docs:
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    return save
