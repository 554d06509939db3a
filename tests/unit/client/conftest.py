"""Fixtures of the client CLI's tests: real ``agentproxy serve`` processes (local mode, the
real agentapi, the echo demo agent) and a runner for the ``agentproxy`` command."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..live_server import LiveServer, running_server
from .support import ADMIN_KEY, BROKEN


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
