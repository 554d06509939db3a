"""Fixtures of the benchmarks' smoke tests."""

from __future__ import annotations

import pytest

from agentproxy.backends.local.process import find_executable


@pytest.fixture(scope="session")
def claude() -> str:
    """The real Claude Code (on PATH or installed into the cache by `bin/just agents`); never skipped."""
    path = find_executable("claude")
    if path is None:
        pytest.fail("Claude Code is not installed: run `bin/just agents` (or `agentproxy install-agents`)")
    return path
