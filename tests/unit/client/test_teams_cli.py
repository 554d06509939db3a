"""Teams through the real ``agentproxy serve`` and the ``agentproxy`` CLI: the profiles a user
may use, a create naming one and sharing it, a refused profile in one line, and the server's
output (its log and the audit lines on stdout) without a credential's value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..live_server import LiveServer, running_server
from .support import agentproxy, one_error_line

ALICE_KEY, ROOT_KEY = "cli-alice-key-0123456789", "cli-root-key-0123456789"
SECRET = "sk-cli-credential-0123456789-SECRET"


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    teams = {"groups": {"ml": ["alice"]}, "default_profile": "plain", "audit_log": "stdout",
             "profiles": {"plain": {"agent": "echo", "description": "the demo agent"},
                          "quick": {"agent": "echo", "groups": ["ml"], "credentials": {"MODEL_TOKEN": "anthropic"}},
                          "secret": {"agent": "echo", "groups": ["ops"]}}}
    with running_server(tmp_path_factory.mktemp("serve-teams"), api_keys=[("alice", ALICE_KEY, False),
                                                                          ("root", ROOT_KEY, True)],
                        settings={"teams": teams}) as live:
        yield live


def test_profiles_create_share_and_refusals(team_server: LiveServer) -> None:
    listed = agentproxy(team_server, "agents", "profiles", key=ALICE_KEY)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["PROFILE", "AGENT", "IMAGE", "GROUPS"]
    assert [line.split()[0] for line in lines[1:]] == ["plain*", "quick"]

    team_server.call("PUT", "/credentials/anthropic", {"value": SECRET}, key=ALICE_KEY)
    made = agentproxy(team_server, "agents", "create", "s1", "--id", "c1", "--profile", "quick", "--share", "ml",
                      "--wait", "-o", "json", key=ALICE_KEY)
    assert made.returncode == 0, made.stderr
    agent = json.loads(made.stdout)
    assert (agent["profile"], agent["group"], agent["owner"], agent["status"]) == ("quick", "ml", "alice", "ready")

    refused = agentproxy(team_server, "agents", "create", "s1", "--profile", "secret", key=ALICE_KEY)
    assert refused.returncode != 0 and "'secret'" in one_error_line(refused)

    deleted = agentproxy(team_server, "agents", "rm", "s1", "c1", key=ALICE_KEY)
    assert deleted.returncode == 0, deleted.stderr
    log = team_server.log()
    assert SECRET not in log and SECRET not in made.stdout + made.stderr
    audit = [json.loads(line) for line in log.splitlines() if line.startswith('{"action"')]
    assert [(r["action"], r["user"], r["status"]) for r in audit] == [
        ("credential.set", "alice", 200), ("create", "alice", 201), ("share", "alice", 201),
        ("create", "alice", 403), ("delete", "alice", 200)]
    assert not list(Path(team_server.data_dir).glob("**/state.json")) or all(
        SECRET not in p.read_text() for p in Path(team_server.data_dir).glob("**/state.json"))
