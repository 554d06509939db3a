"""Credentials in k8s mode, the pure part: a profile's credential variables rendered as
``secretKeyRef`` to the agent's own Secret (names only), the Secrets' names and shapes, and
which holder's value an agent gets."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from agentproxy.backends.k8s.secrets import agent_secret, agent_secret_name, holder_secret, holder_secret_name
from agentproxy.naming import is_dns_subdomain
from agentproxy.render import render_agent
from agentproxy.teams.config import teams_of
from agentproxy.teams.credentials import Holder, agent_holders, resolve_env

from .._support import by_kind, container, settings_with, spec_for


@pytest.fixture
def settings():
    return settings_with("teams.groups={ml: [alice]}",
                         "teams.profiles={claude: {agent: echo, credentials: {ANTHROPIC_API_KEY: anthropic, "
                         "GH_TOKEN: github}}, plain: {agent: echo}}")


def test_a_profiles_credentials_are_secret_key_refs_to_the_agents_secret(settings):
    spec = dataclasses.replace(spec_for(settings, agent_id="c1"), owner="alice", profile="claude")
    objects = render_agent(settings, spec)
    env = container(by_kind(objects))["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs == {name: {"name": "agent-c1-credentials", "key": name, "optional": True}
                    for name in ("ANTHROPIC_API_KEY", "GH_TOKEN")}
    assert "Secret" not in [o["kind"] for o in objects]
    assert "ANTHROPIC_API_KEY" not in str(by_kind(objects)["ConfigMap"])
    assert agent_secret_name("c1") == "agent-c1-credentials"
    # Without a profile's credentials, nothing of the kind.
    plain = dataclasses.replace(spec, profile="plain")
    assert not [e for e in container(by_kind(render_agent(settings, plain)))["env"] if "valueFrom" in e]


def test_secret_names_are_valid_and_distinct_per_holder():
    names = {holder_secret_name(Holder(kind, name)) for kind in ("user", "group")
             for name in ("alice", "Alice", "alice@example.com", "alice.example.com", "ml")}
    assert len(names) == 10
    assert all(is_dns_subdomain(n) and len(n) <= 63 for n in names)
    long = holder_secret_name(Holder("user", "a" * 128))
    assert is_dns_subdomain(long) and len(long) <= 253


def test_the_secrets_shapes():
    secret = holder_secret("ns", Holder("user", "alice@example.com"))
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "credentials"
    assert secret["metadata"]["annotations"]["agentproxy.io/credentials-holder"] == "user/alice@example.com"
    owner = {"metadata": {"name": "agent-a1-config", "uid": "u-1"}}
    made = agent_secret("ns", "a1", "s1", {"A": "v1"}, owner)
    assert made["data"] == {"A": base64.b64encode(b"v1").decode()}
    assert made["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap",
                                                    "name": "agent-a1-config", "uid": "u-1"}]
    assert made["metadata"]["labels"]["app.kubernetes.io/component"] == "credentials"


async def test_the_owners_credential_wins_then_the_shared_group_then_the_owners_groups(settings):
    profile, holders = agent_holders(settings, "alice", None, "claude")
    assert profile is teams_of(settings).profiles["claude"]
    assert holders == [Holder("user", "alice"), Holder("group", "ml")]
    stores = {Holder("user", "alice"): {"anthropic": "mine"}, Holder("group", "ml"): {"anthropic": "team",
                                                                                      "github": "team-gh"}}
    read: list[Holder] = []

    async def values_of(holder):
        read.append(holder)
        return stores.get(holder, {})

    env = await resolve_env(values_of, profile, holders)
    assert env == {"ANTHROPIC_API_KEY": "mine", "GH_TOKEN": "team-gh"}
    read.clear()
    stores[Holder("user", "alice")]["github"] = "mine-gh"
    assert await resolve_env(values_of, profile, holders) == {"ANTHROPIC_API_KEY": "mine", "GH_TOKEN": "mine-gh"}
    assert read == [Holder("user", "alice")]  # the group's Secret is not read when nothing is missing
    assert agent_holders(settings, "alice", None, "plain") == (None, [])


