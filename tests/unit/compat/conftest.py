"""Fixtures of the agentapi-proxy compatibility tests: both servers, for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentproxy.api import hash_key
from testenv.ports import free_block

from .servers import Server, agent_programs, start_agentproxy, start_peer, stop_agentproxy, stop_peer

KEYS = {"admin": "compat-admin-key", "alice": "compat-alice-key", "bob": "compat-bob-key"}


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``agentapi`` and ``claude`` (the echo demo agent) for both servers."""
    return agent_programs(tmp_path_factory.mktemp("programs"))


@pytest.fixture(scope="module")
def agentproxy_server(tmp_path_factory: pytest.TempPathFactory, programs: Path) -> Iterator[Server]:
    """agentproxy in local mode, the layer on, no API keys (as the peer's clients run it)."""
    server = start_agentproxy(tmp_path_factory.mktemp("agentproxy") / "open", programs, free_block(150, mostly=True))
    try:
        yield server
    finally:
        stop_agentproxy(server)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, programs: Path) -> Iterator[Server]:
    """agentproxy with three API keys: ``admin`` (an admin), ``alice`` and ``bob``."""
    keys = [{"name": name, "sha256": hash_key(key), "admin": name == "admin"} for name, key in KEYS.items()]
    server = start_agentproxy(tmp_path_factory.mktemp("agentproxy") / "keyed", programs, free_block(150, mostly=True), keys)
    server.keys = dict(KEYS)
    try:
        yield server
    finally:
        stop_agentproxy(server)


@pytest.fixture(scope="module")
def peer_server(tmp_path_factory: pytest.TempPathFactory, programs: Path) -> Iterator[Server]:
    """The Go agentapi-proxy v1.73.0 on loopback, auth off."""
    server = start_peer(tmp_path_factory.mktemp("peer") / "server", programs)
    try:
        yield server
    finally:
        stop_peer(server)


@pytest.fixture(scope="module")
def both(agentproxy_server: Server, peer_server: Server) -> tuple[Server, Server]:
    """agentproxy and the peer, in that order."""
    return agentproxy_server, peer_server
