"""Fixtures of the local backend's tests: real processes on 127.0.0.1, short timings.

agentapi is the real binary (installed by ``just agentapi``); agent programs are
the echo demo agent and the modes of ``programs.py``. Every test gets its own data_dir and
its own block of ports, and after every test no process may be left whose
working directory is in the test's directory, and no zombie child of the test run."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from agentproxy.agentapi import locate
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import find_executable
from agentproxy.settings import Settings
from testenv.ports import free_block

from .serve_process import BLOCK, Server, serving
from .support import STARTER_MARK, assert_nothing_left, end_starters, make_settings, port_block, shut_down

_marks = itertools.count()


@pytest.fixture(autouse=True)
def starters_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The agent starters a test starts (in a backend of its own or in a proxy it runs) outlive
    their proxy until their last agent ended: after the test (and its fixtures' clean-up, which
    deletes every agent) each must end by itself; one that does not is killed by its pid, and
    the test fails."""
    mark = f"{os.getpid()}-{next(_marks)}"
    monkeypatch.setenv(STARTER_MARK, mark)
    yield
    killed = end_starters(mark, timeout=30)
    assert not killed, f"agent starters {killed} still ran after every agent of the test was deleted"


@pytest.fixture(scope="session")
def launcher() -> str:
    """The real agentapi (on PATH or built into the cache by `just agentapi`); never skipped."""
    path = locate()
    if path is None:
        pytest.fail("agentapi is not installed: run `bin/just agentapi` (or `agentproxy install-agentapi`)")
    return path


@pytest.fixture(scope="session")
def claude() -> str:
    """The real Claude Code (on PATH or installed into the cache by `bin/just agents`); never skipped."""
    path = find_executable("claude")
    if path is None:
        pytest.fail("Claude Code is not installed: run `bin/just agents` (or `agentproxy install-agents`)")
    return path


@pytest.fixture
def ports() -> tuple[int, int]:
    """A block of ports of its own for each test."""
    return port_block()


@pytest.fixture
def settings(tmp_path: Path, launcher: str, ports: tuple[int, int]) -> Settings:
    return make_settings(tmp_path / "data", launcher, ports)


@pytest.fixture
async def backend(settings: Settings, tmp_path: Path) -> AsyncIterator[LocalBackend]:
    """A started backend; whatever a test leaves is deleted, and then nothing may remain."""
    instance = LocalBackend(settings)
    await instance.start()
    try:
        yield instance
    finally:
        await shut_down(instance)
    await assert_nothing_left(tmp_path)


@pytest.fixture
async def served(tmp_path: Path, launcher: str) -> AsyncIterator[tuple[Server, aiohttp.ClientSession]]:
    """A server (not started yet) on a block of ports of its own; on the way out every agent is
    deleted through it and nothing may be left running."""
    first, last = free_block(BLOCK, mostly=True)
    server = Server(tmp_path / "data", (first + 1, last), launcher)
    server.port, server.base = first, f"http://127.0.0.1:{first}"
    server.env["AGENTAPI_SERVER_PORT"] = str(first)
    async with serving(server, tmp_path) as client:
        yield server, client
