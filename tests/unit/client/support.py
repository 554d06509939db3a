"""What the client's tests share: the admin key, a broken agent type, and running the ``agentproxy``
command against a live server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..live_server import LiveServer, clean_env

ADMIN_KEY = "cli-admin-key-0123456789"
BROKEN = {"broken": ["python3", "-c", "import sys; sys.exit(3)"]}
"""An agent type whose program exits at once: agentapi exits with it, and the agent crash-loops."""


def cli_env(server: LiveServer, key: str | None = None) -> dict[str, str]:
    env = clean_env()
    env["AGENTPROXY_URL"] = server.url
    if key:
        env["AGENTPROXY_API_KEY"] = key
    return env


def agentproxy(server: LiveServer, *args: str, key: str | None = None, timeout: float = 120,
               stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``agentproxy ARGS`` against ``server`` (its URL from AGENTPROXY_URL)."""
    return subprocess.run([sys.executable, "-m", "agentproxy", *args], env=cli_env(server, key), text=True,
                          capture_output=True, timeout=timeout, input=stdin if stdin is not None else "",
                          cwd=cwd)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr (no traceback)."""
    err = proc.stderr
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()
