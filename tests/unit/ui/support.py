"""What the dashboard's tests share: the admin key, the browser's path and arguments, the viewport,
the sidebar's rows and the page's errors."""

from __future__ import annotations

import os
from pathlib import Path

ADMIN_KEY = "ui-admin-key-0123456789"
CHROMIUM = os.environ.get("AGENTPROXY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO_ROOT = Path(__file__).resolve().parents[3]
VIEWPORT = {"width": 1280, "height": 820}
READY_TIMEOUT = 60_000
"""Milliseconds the page is given to show an agent ready."""


def row(page, session: str, agent: str):
    """The agent's row in the sidebar."""
    return page.locator(f'.agent-row[data-key="{session}/{agent}"]')


def real_errors(page) -> list[str]:
    """Uncaught errors and console errors, less the browser's note on each 4xx answer."""
    return [e for e in page.errors if "Failed to load resource" not in e]
