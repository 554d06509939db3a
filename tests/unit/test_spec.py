"""Validation of a create request into an AgentSpec: ids, agent type, env,
message and resource overrides within the configured limits."""

from __future__ import annotations

import pytest

from agentproxy.naming import AGENT_ID_RULE, SESSION_ID_RULE, is_valid_agent_id
from agentproxy.settings import Settings
from agentproxy.spec import (
    MAX_ENV_VALUE,
    MAX_ENV_VARS,
    MAX_MESSAGE,
    TEXT_RULE,
    Resources,
    SpecError,
    build_spec,
    text_problem,
)

from ._support import settings_with


def _error(settings, **kwargs) -> SpecError:
    kwargs.setdefault("session", "s1")
    with pytest.raises(SpecError) as info:
        build_spec(settings, **kwargs)
    return info.value


def test_defaults_from_settings(settings):
    spec = build_spec(settings, "s1", "a1")
    assert (spec.id, spec.session, spec.type) == ("a1", "s1", "echo")
    assert spec.command == ("python3", "-m", "agentproxy.demo_agent")
    assert spec.resources == Resources("100m", "500m", "256Mi", "512Mi", "1Gi")
    assert dict(spec.env) == {} and spec.message is None and spec.owner is None


def test_generated_id_when_none_given(settings):
    first, second = build_spec(settings, "s1"), build_spec(settings, "s1")
    assert is_valid_agent_id(first.id) and is_valid_agent_id(second.id)
    assert first.id != second.id


@pytest.mark.parametrize("agent_id", ["A1", "a_1", "-a", "a" * 47, "", "a1\n"])
def test_bad_agent_id(settings, agent_id):
    err = _error(settings, agent_id=agent_id)
    assert (err.field, err.rule, err.kind) == ("id", AGENT_ID_RULE, "invalid")
    assert str(err) == f"id: {AGENT_ID_RULE}"


def test_agent_id_of_46_characters(settings):
    assert build_spec(settings, "s1", "a" * 46).id == "a" * 46


@pytest.mark.parametrize("session", ["", "s" * 64, "bad session", "s\n", "s:1"])
def test_bad_session(settings, session):
    err = _error(settings, session=session, agent_id="a1")
    assert (err.field, err.rule) == ("session", SESSION_ID_RULE)


def test_agent_types(settings):
    spec = build_spec(settings, "s1", "a1", agent_type="claude")
    assert spec.agentapi_type == "claude" and spec.command == ("claude",)
    assert build_spec(settings, "s1", "a1", agent_type="echo").agentapi_type == "custom"
    err = _error(settings, agent_id="a1", agent_type="nope")
    assert err.field == "agent" and err.kind == "unprocessable" and "echo" in err.rule


def test_command_line_is_shell_quoted():
    settings = settings_with("agents.commands.echo=[say, 'two words', \"it's\"]")
    spec = build_spec(settings, "s1", "a1")
    assert spec.command == ("say", "two words", "it's")
    assert spec.command_line == "say 'two words' 'it'\"'\"'s'"


def test_env_rules(settings):
    assert dict(build_spec(settings, "s1", "a1", env={"FOO": "1", "_x2": ""}).env) == {"FOO": "1", "_x2": ""}
    for name in ("1X", "A-B", "A B", "", "X\n"):
        assert _error(settings, agent_id="a1", env={name: "v"}).field == f"env.{name}"
    for name in ("AGENTAPI_PORT", "AGENTPROXY_AGENT_ID"):
        assert "reserved" in _error(settings, agent_id="a1", env={name: "v"}).rule
    assert _error(settings, agent_id="a1", env={"X": 1}).field == "env.X"
    assert _error(settings, agent_id="a1", env={"X": "v" * (MAX_ENV_VALUE + 1)}).field == "env.X"
    too_many = {f"V{i}": "" for i in range(MAX_ENV_VARS + 1)}
    assert _error(settings, agent_id="a1", env=too_many).field == "env"
    assert _error(settings, agent_id="a1", env=["X=1"]).field == "env"


def test_message_rules(settings):
    assert build_spec(settings, "s1", "a1", message="hello").message == "hello"
    assert build_spec(settings, "s1", "a1", message="m" * MAX_MESSAGE).message == "m" * MAX_MESSAGE
    assert _error(settings, agent_id="a1", message="m" * (MAX_MESSAGE + 1)).field == "message"
    assert _error(settings, agent_id="a1", message=42).field == "message"


def test_resource_overrides_within_limits(settings):
    spec = build_spec(settings, "s1", "a1", resources={"cpu_request": "200m", "memory_limit": "384Mi",
                                                       "storage_size": "512Mi", "cpu_limit": 0.25})
    assert spec.resources == Resources("200m", "0.25", "256Mi", "384Mi", "512Mi")


@pytest.mark.parametrize("resources,field,rule", [
    ({"cpu_limit": "1"}, "resources.cpu_limit", "k8s_mode.resources.cpu_limit (500m)"),
    ({"cpu_request": "600m"}, "resources.cpu_request", "k8s_mode.resources.cpu_limit (500m)"),
    ({"memory_request": "1Gi"}, "resources.memory_request", "k8s_mode.resources.memory_limit (512Mi)"),
    ({"storage_size": "2Gi"}, "resources.storage_size", "k8s_mode.resources.storage_size (1Gi)"),
    ({"cpu_request": "300m", "cpu_limit": "200m"}, "resources.cpu_request", "resources.cpu_limit (200m)"),
    ({"memory_limit": "128Mi"}, "resources.memory_request", "resources.memory_limit (128Mi)"),
    ({"cpu": "1"}, "resources.cpu", "is not a resource"),
    ({"cpu_limit": "lots"}, "resources.cpu_limit", "Kubernetes quantity"),
    ({"cpu_limit": True}, "resources.cpu_limit", "Kubernetes quantity"),
    ({"cpu_limit": "0"}, "resources.cpu_limit", "positive"),
])
def test_resource_override_errors(settings, resources, field, rule):
    err = _error(settings, agent_id="a1", resources=resources)
    assert err.field == field and err.kind == "unprocessable"
    assert rule in err.rule
    assert str(err).startswith(f"{field}: ")


def test_fingerprint_is_stable_and_sensitive(settings):
    a = build_spec(settings, "s1", "a1", env={"A": "1", "B": "2"})
    b = build_spec(settings, "s1", "a1", env={"B": "2", "A": "1"})
    c = build_spec(settings, "s1", "a1", env={"A": "1", "B": "3"})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 16
    assert a.to_dict()["command"] == list(a.command)


@pytest.mark.parametrize("field, kwargs", [
    ("message", {"message": "a\x00b"}),
    ("message", {"message": "\ud83d"}),  # half of a pair
    ("env.X", {"env": {"X": "\x00"}}),
    ("env.X", {"env": {"X": "ok\udfffok"}}),
])
def test_text_no_process_can_take_is_refused_naming_the_field(field, kwargs):
    with pytest.raises(SpecError) as caught:
        build_spec(Settings(), "s1", "a1", **kwargs)
    assert caught.value.field == field and caught.value.kind == "unprocessable"
    assert TEXT_RULE in caught.value.rule


def test_text_beyond_ascii_is_text():
    made = build_spec(Settings(), "s1", "a1", message="héllo 🌍 \u2028", env={"X": "tab\tand\nnewline ☃"})
    assert made.message == "héllo 🌍 \u2028" and made.env["X"] == "tab\tand\nnewline ☃"
    assert text_problem("\ud800") and text_problem("\x00") and text_problem("fine") is None
