"""The audit log over real HTTP: one JSON line per create, share, delete, suspend, resume,
credential change and refused request, with who, what, which agent, from where and the result,
and never a credential value or message content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentproxy.api import hash_key

from .._support import settings_with

ALICE, BOB = "k-alice", "k-bob"
KEYS = [{"name": "alice-laptop", "sha256": hash_key(ALICE), "user": "alice"}, {"name": "bob", "sha256": hash_key(BOB)}]
SECRET, PROMPT = "sk-audit-0123456789-SECRET", "the confidential first prompt"


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def settings(audit_file, tmp_path):
    return settings_with("teams.groups={ml: [alice]}", "teams.quotas={users: {bob: {agents: 1}}}",
                         f"teams.audit_log={audit_file}", f"local_mode.data_dir={tmp_path / 'data'}")


async def test_every_audited_action_is_one_line_without_secrets(make_api, audit_file):
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1", "share": "ml", "message": PROMPT},
                           headers=h(ALICE))).status == 201
    assert (await api.post("/sessions/s1/agents/a1/suspend", headers=h(ALICE))).status == 200
    assert (await api.post("/sessions/s1/agents/a1/resume", headers=h(ALICE))).status == 200
    assert (await api.put("/sessions/s1/agents/a1/share", json={"group": None}, headers=h(ALICE))).status == 200
    assert (await api.put("/credentials/anthropic", json={"value": SECRET}, headers=h(ALICE))).status == 200
    assert (await api.delete("/credentials/anthropic", headers=h(ALICE))).status == 200
    assert (await api.get("/agents", headers=h("wrong-key"))).status == 401
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers=h(BOB))).status == 201
    assert (await api.post("/sessions/s2/agents", json={"id": "b2"}, headers=h(BOB))).status == 429
    assert (await api.delete("/sessions/s1/agents/a1", headers=h(ALICE))).status == 200
    assert (await api.get("/agents", headers=h(ALICE))).status == 200  # reads are not audited
    text = audit_file.read_text()
    assert SECRET not in text and PROMPT not in text and ALICE not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["action"], r["user"], r["agent"], r["status"], r["result"]) for r in records] == [
        ("create", "alice", "a1", 201, "ok"),
        ("share", "alice", "a1", 201, "ok"),
        ("suspend", "alice", "a1", 200, "ok"),
        ("resume", "alice", "a1", 200, "ok"),
        ("share", "alice", "a1", 200, "ok"),
        ("credential.set", "alice", None, 200, "ok"),
        ("credential.delete", "alice", None, 200, "ok"),
        ("request", None, None, 401, "refused"),
        ("create", "bob", "b1", 201, "ok"),
        ("create", "bob", None, 429, "refused"),
        ("delete", "alice", "a1", 200, "ok"),
    ]
    assert records[0]["key"] == "alice-laptop" and records[0]["from"] == "127.0.0.1"
    assert records[1]["group"] == "ml" and records[5]["credential"] == "anthropic"
    assert "group" in records[4] and records[4]["group"] is None  # shared with no group any more
    assert records[9]["error"] == {"code": "quota_exceeded", "field": "teams.quotas.users.bob.agents"}
