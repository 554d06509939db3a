"""Test-wide collection rules."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # Tests of the test cluster's real node run where it is asked for
    # (AGENTPROXY_REAL_NODE=1, as in CI); elsewhere they are left out, not skipped.
    if os.environ.get("AGENTPROXY_REAL_NODE") != "1":
        left_out = [item for item in items if item.get_closest_marker("real_node")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker("real_node")]


def pytest_report_header(config):
    state = "on" if os.environ.get("AGENTPROXY_REAL_NODE") == "1" else "left out (AGENTPROXY_REAL_NODE=1 runs them)"
    return f"real-node tests: {state}"
