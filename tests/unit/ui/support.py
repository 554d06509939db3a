"""What the dashboard's tests share: the admin key, the browser's path and arguments, the viewport."""

from __future__ import annotations

import os
from pathlib import Path

ADMIN_KEY = "ui-admin-key-0123456789"
CHROMIUM = os.environ.get("AGENTPROXY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO_ROOT = Path(__file__).resolve().parents[3]
VIEWPORT = {"width": 1280, "height": 820}
