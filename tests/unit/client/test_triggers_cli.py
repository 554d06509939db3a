"""Triggers through the real ``agentproxy serve`` and the ``agentproxy`` CLI: a signed delivery
starts an agent, and ``agents hooks|schedules|deliveries`` list what the server has and did,
without the hook's secret anywhere in the output or the server's log."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..live_server import LiveServer, running_server
from ..triggers.support import SECRET, github_headers, hook, payload
from .support import agentproxy, one_error_line

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


def test_a_hook_defined_and_deleted_from_the_cli(trigger_server: LiveServer, tmp_path: Path) -> None:
    value = "cli-stored-hook-secret-93a1"
    spec = tmp_path / "hook.yaml"
    spec.write_text(f"secret_value: {value}\nowner: alice\nagent: echo\nmatch: {{events: [issues]}}\n"
                    "prompt: 'Look at {{ issue.number }}'\n")
    put = agentproxy(trigger_server, "agents", "hooks", "put", "from-cli", "--file", str(spec), key=ROOT_KEY)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines()[1].split()[0] == "from-cli" and put.stdout.split()[-1] == "api"
    listed = agentproxy(trigger_server, "agents", "hooks", "-o", "json", key=ROOT_KEY)
    assert {h["id"]: h["source"] for h in json.loads(listed.stdout)["hooks"]} == {"gh": "settings", "from-cli": "api"}
    # Refusals: one line, non-zero, naming the field or the file.
    spec.write_text("secret_value: x\nprompt: '{{ issue.__class__ }}'\n")
    bad = agentproxy(trigger_server, "agents", "hooks", "put", "from-cli", "-f", str(spec), key=ROOT_KEY)
    assert bad.returncode == 1 and "prompt: reaches Python internals" in one_error_line(bad)
    spec.write_text("prompt: [unclosed\n")
    unreadable = agentproxy(trigger_server, "agents", "hooks", "put", "x", "-f", str(spec), key=ROOT_KEY)
    assert unreadable.returncode == 2 and "--file: not YAML or JSON" in one_error_line(unreadable)
    missing = agentproxy(trigger_server, "agents", "hooks", "put", "x", "-f", str(tmp_path / "none"), key=ROOT_KEY)
    assert missing.returncode == 2 and "--file: No such file" in one_error_line(missing)
    fixed = agentproxy(trigger_server, "agents", "hooks", "rm", "gh", key=ROOT_KEY)
    assert fixed.returncode == 1 and "defined in the settings" in one_error_line(fixed)
    removed = agentproxy(trigger_server, "agents", "hooks", "rm", "from-cli", key=ROOT_KEY)
    assert removed.returncode == 0 and removed.stdout == "deleted hook from-cli\n", removed.stderr
    again = agentproxy(trigger_server, "agents", "hooks", "rm", "from-cli", key=ROOT_KEY)
    assert again.returncode == 4 and "no such hook" in one_error_line(again)
    for text in (put.stdout, listed.stdout, trigger_server.log()):
        assert value not in text
