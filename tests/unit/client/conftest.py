"""Fixtures of the client CLI's tests: real ``agentproxy serve`` processes (local mode, the
real agentapi, the echo demo agent) and a runner for the ``agentproxy`` command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..live_server import LiveServer, clean_env, running_server

ADMIN_KEY = "cli-admin-key-0123456789"
BROKEN = {"broken": ["python3", "-c", "import sys; sys.exit(3)"]}
"""An agent type whose program exits at once: agentapi exits with it, and the agent crash-loops."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server without API keys. Its agent bad/b0 (type broken) starts crash-looping at once,
    so that it has failed for good by the time the last test looks at it."""
    with running_server(tmp_path_factory.mktemp("serve"), agent_commands=BROKEN) as live:
        live.call("POST", "/sessions/bad/agents", {"id": "b0", "agent": "broken"})
        yield live


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that wants an API key (one admin key)."""
    with running_server(tmp_path_factory.mktemp("serve-keys"), api_keys=[("admin", ADMIN_KEY, True)]) as live:
        yield live


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
