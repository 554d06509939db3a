"""Triggers through the real ``agentproxy serve`` and the ``agentproxy`` CLI: a signed delivery
starts an agent, and ``agents hooks|schedules|deliveries`` list what the server has and did,
without the hook's secret anywhere in the output or the server's log."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from ..live_server import LiveServer, running_server
from ..triggers.support import SECRET, github_headers, hook, payload
from .support import agentproxy

ROOT_KEY = "cli-root-key-triggers-0123456789"


@pytest.fixture(scope="module")
def trigger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    triggers = {"hooks": {"gh": hook()},
                "schedules": {"nightly": {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "prompt": "nightly run",
                                          "agent": "echo"}}}
    with running_server(tmp_path_factory.mktemp("serve-triggers"), api_keys=[("root", ROOT_KEY, True)],
                        settings={"triggers": triggers}, env={"TEST_HOOK_SECRET": SECRET}) as live:
        yield live


def test_a_delivery_and_the_listings(trigger_server: LiveServer) -> None:
    body = payload("issues.opened")
    request = urllib.request.Request(f"{trigger_server.url}/hooks/gh", data=body, method="POST",
                                     headers=github_headers("issues", body))
    with urllib.request.urlopen(request, timeout=60) as reply:
        assert reply.status == 202
        agent = json.loads(reply.read())
    hooks = agentproxy(trigger_server, "agents", "hooks", key=ROOT_KEY)
    assert hooks.returncode == 0, hooks.stderr
    assert hooks.stdout.splitlines()[0].split()[:3] == ["HOOK", "SCHEME", "EVENTS"]
    assert hooks.stdout.splitlines()[1].split()[:3] == ["gh", "github", "issues,pull_request"]
    schedules = agentproxy(trigger_server, "agents", "schedules", "-o", "json", key=ROOT_KEY)
    listed = json.loads(schedules.stdout)["schedules"][0]
    assert listed["id"] == "nightly" and listed["next_tick"].endswith(("+01:00", "+02:00"))
    assert listed["claim"] is None  # no tick fired yet
    table = agentproxy(trigger_server, "agents", "schedules", key=ROOT_KEY)
    assert table.returncode == 0 and table.stdout.split()[:9] == [
        "SCHEDULE", "CRON", "TIMEZONE", "OVERLAP", "LAST", "NEXT", "MISSED", "REPLICA", "nightly"], table.stdout
    deliveries = agentproxy(trigger_server, "agents", "deliveries", "--kind", "hook", key=ROOT_KEY)
    assert deliveries.returncode == 0, deliveries.stderr
    row = deliveries.stdout.splitlines()[1].split()
    assert row[2:6] == ["hook", "gh", "202", agent["id"]] and row[6] == "created"
    for text in (hooks.stdout, schedules.stdout, deliveries.stdout, trigger_server.log()):
        assert SECRET not in text
