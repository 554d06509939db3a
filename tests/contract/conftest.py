"""The contract suite runs every test against every backend.

``memory`` and ``local`` run with the unit tests; ``k8s`` needs the test cluster and is
marked ``e2e``, so it runs in the e2e step (`just e2e`), which has one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import Harness, harness

BACKENDS = [pytest.param("memory"), pytest.param("local"), pytest.param("k8s", marks=pytest.mark.e2e)]


@pytest.fixture(params=BACKENDS)
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A started backend of each kind, cleaned up after the test."""
    async with harness(request.param, tmp_path) as started:
        yield started
