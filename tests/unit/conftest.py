"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from agentproxy.settings import Settings

from ._support import settings_with


@pytest.fixture
def settings() -> Settings:
    """The built-in default settings (no file, empty environment, no overrides)."""
    return settings_with()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds a wheel or runs processes; deselect with -m 'not slow'")
