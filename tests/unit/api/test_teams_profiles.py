"""Agent profiles over real HTTP: which the caller may use, what a create with one is made of,
refusals that name the profile, and ``agentproxy render --profile``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentproxy.api import hash_key
from agentproxy.settings import SettingsError

from .._support import settings_with
from .support import error_of

ALICE, BOB, ADMIN = "k-alice", "k-bob", "k-admin"
KEYS = [{"name": "alice", "sha256": hash_key(ALICE)}, {"name": "bob", "sha256": hash_key(BOB)},
        {"name": "root", "sha256": hash_key(ADMIN), "admin": True}]
PROFILES = ("teams.profiles={"
            "small: {description: a small echo, agent: echo, env: {TONE: calm}, "
            "        resources: {cpu_limit: 500m, memory_limit: 256Mi}},"
            "big: {agent: echo, image: 'registry.example/big:1', groups: [ml], "
            "      resources: {cpu_request: '3', cpu_limit: '4', memory_limit: 8Gi, storage_size: 20Gi},"
            "      instructions: 'Be terse.', mcp_servers: {docs: {command: docs-mcp}},"
            "      credentials: {ANTHROPIC_API_KEY: anthropic}}}")


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings():
    return settings_with("teams.groups={ml: [alice]}", PROFILES, "teams.default_profile=small")


async def test_profiles_lists_only_those_the_caller_may_use(make_api):
    api = await make_api(KEYS)
    alice = await (await api.get("/profiles", headers=h(ALICE))).json()
    assert [p["name"] for p in alice["profiles"]] == ["big", "small"] and alice["default"] == "small"
    big = alice["profiles"][0]
    # What a profile offers, never an environment value or the instruction text.
    assert big["image"] == "registry.example/big:1" and big["groups"] == ["ml"] and big["instructions"] is True
    assert big["credentials"] == ["anthropic"] and big["mcp_servers"] == ["docs"]
    assert "Be terse" not in json.dumps(alice) and "calm" not in json.dumps(alice)
    bob = await (await api.get("/profiles", headers=h(BOB))).json()
    assert [p["name"] for p in bob["profiles"]] == ["small"]
    assert [p["name"] for p in (await (await api.get("/profiles", headers=h(ADMIN))).json())["profiles"]] == [
        "big", "small"]
    await error_of(await api.get("/profiles"), 401)


async def test_a_create_is_made_of_its_profile_and_the_default_applies(make_api):
    api = await make_api(KEYS)
    response = await api.post("/sessions/s1/agents", json={"id": "a1", "profile": "big", "resources": {
        "cpu_limit": "3500m"}}, headers=h(ALICE))
    assert response.status == 201, await response.text()
    agent = await response.json()
    assert agent["profile"] == "big" and agent["agent"] == "echo"
    # The profile's resources are the base (beyond the global ones); the request changes them within it.
    assert agent["resources"]["cpu_limit"] == "3500m" and agent["resources"]["storage_size"] == "20Gi"
    plain = await (await api.post("/sessions/s2/agents", json={"id": "b1", "env": {"X": "1"}},
                                  headers=h(BOB))).json()
    assert plain["profile"] == "small" and plain["resources"]["memory_limit"] == "256Mi"
    error = await error_of(await api.post("/sessions/s2/agents", json={"resources": {"cpu_limit": "1"}},
                                          headers=h(BOB)), 422)
    assert error["field"] == "resources.cpu_limit" and "500m" in error["message"]


async def test_a_forbidden_or_unknown_profile_is_refused_naming_it(make_api, backend):
    api = await make_api(KEYS)
    error = await error_of(await api.post("/sessions/s2/agents", json={"profile": "big"}, headers=h(BOB)), 403)
    assert error["field"] == "profile" and "'big'" in error["message"] and "ml" in error["message"]
    error = await error_of(await api.post("/sessions/s2/agents", json={"profile": "huge"}, headers=h(BOB)), 422)
    assert error["field"] == "profile" and "'huge'" in error["message"] and "small" in error["message"]
    assert backend.agents == {}


def test_the_environment_of_a_profile_goes_under_the_request(settings):
    from agentproxy.api.auth import Principal
    from agentproxy.teams.config import teams_of
    from agentproxy.teams.http import team_spec
    spec = team_spec(teams_of(settings), settings, Principal("bob", False), "s1",
                     {"env": {"TONE": "loud", "X": "1"}})
    assert dict(spec.env) == {"TONE": "loud", "X": "1"} and spec.profile == "small"


def _render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentproxy", "render", "--session", "s1", "--agent", "a1",
                           "--set", "teams.groups={ml: [alice]}", "--set", PROFILES, "-o", "json", *args],
                          capture_output=True, text=True, timeout=120)


def test_render_shows_the_manifests_of_a_profile():
    done = _render("--profile", "big")
    assert done.returncode == 0, done.stderr
    objects = {o["kind"]: o for o in json.loads(done.stdout)["items"]}
    container = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/big:1"
    assert container["resources"]["limits"]["cpu"] == "4"
    assert objects["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    done = _render("--profile", "nope")
    assert done.returncode != 0 and "'nope'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("override, path", [
    ("teams.profiles={p: {agent: nosuch}}", "teams.profiles.p.agent"),
    ("teams.profiles={p: {colour: red}}", "teams.profiles.p.colour"),
    ("teams.profiles={p: {resources: {cpu_limit: lots}}}", "teams.profiles.p.resources.cpu_limit"),
    ("teams.profiles={p: {credentials: {ANTHROPIC_API_KEY: 'Bad Name'}}}", "teams.profiles.p.credentials.ANTHROPIC_API_KEY"),
    ("teams.profiles={p: {idle_timeout: soon}}", "teams.profiles.p.idle_timeout"),
    ("teams.default_profile=nope", "teams.default_profile"),
])
def test_bad_profiles_name_the_setting(override, path):
    with pytest.raises(SettingsError) as caught:
        settings_with(override)
    assert caught.value.key == path, str(caught.value)
