"""Fixtures of the dashboard's tests: real servers (see ``live_server``), Debian's Chromium
driven by Playwright, and a place for the screenshots of every step.

Chromium comes from the distribution (``bin/just browser`` installs it; Playwright's
own browser downloads are not used). Screenshots go to ``test-artifacts/dashboard/``
at the top of the checkout (or ``$AGENTPROXY_TEST_ARTIFACTS/dashboard``) for people
to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..live_server import LiveServer, running_server

ADMIN_KEY = "ui-admin-key-0123456789"
CHROMIUM = os.environ.get("AGENTPROXY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO_ROOT = Path(__file__).resolve().parents[3]
VIEWPORT = {"width": 1280, "height": 820}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server without API keys."""
    with running_server(tmp_path_factory.mktemp("serve-ui")) as live:
        yield live


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that wants an API key."""
    with running_server(tmp_path_factory.mktemp("serve-ui-keys"), api_keys=[("admin", ADMIN_KEY, True)]) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (the distribution's), driven by Playwright. Per module: Playwright's
    synchronous API keeps an event loop of its own running until it is closed, which
    asyncio-based tests after it must not find."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `bin/just browser` installs it "
                    "(apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh browser context (no cookies, no storage) and page; page errors fail the test."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    base = Path(os.environ.get("AGENTPROXY_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    directory = base / "dashboard"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def shot(page, artifacts: Path) -> Callable[[str], Path]:
    """``shot("01-name")`` saves a screenshot of the page as ``01-name.png``."""
    def take(name: str) -> Path:
        path = artifacts / f"{name}.png"
        page.screenshot(path=str(path))
        return path
    return take
