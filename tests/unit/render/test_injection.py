"""User and settings values cannot change the structure of the manifests:
every value round-trips exactly, through the rendered objects and through the
YAML and JSON output, and never adds keys, objects or documents."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from agentproxy.render import dump_json, dump_yaml, render_agent, yaml_quote
from agentproxy.spec import SpecError, text_problem

from .._support import by_kind, container, settings_with, spec_for
from .support import NASTY


def _check_output(objects):
    docs = list(yaml.safe_load_all(dump_yaml(objects)))
    assert docs == objects
    assert json.loads(dump_json(objects))["items"] == objects


def _spec_with(settings, **fields):
    """The spec with these fields, past build_spec's rules when they refuse a value (a NUL):
    the templates stay safe without them."""
    if all(text_problem(v) is None for v in [*fields.get("env", {}).values(), fields.get("message") or ""]):
        return spec_for(settings, **fields)
    return dataclasses.replace(spec_for(settings), **fields)


@pytest.mark.parametrize("value", NASTY)
def test_env_value_round_trips(settings, value):
    spec = _spec_with(settings, env={"PAYLOAD": value, "AFTER": "x"})
    objects = render_agent(settings, spec)
    assert len(objects) == 4
    data = by_kind(objects)["ConfigMap"]["data"]
    assert data["PAYLOAD"] == value
    assert set(data) == {"AGENTPROXY_AGENT_ID", "AGENTPROXY_SESSION", "AGENTPROXY_AGENT_TYPE",
                         "AGENTPROXY_AGENT_COMMAND", "PAYLOAD", "AFTER"}
    assert data["AFTER"] == "x"
    _check_output(objects)


@pytest.mark.parametrize("value", NASTY)
def test_message_round_trips(settings, value):
    objects = render_agent(settings, _spec_with(settings, message=value))
    data = by_kind(objects)["ConfigMap"]["data"]
    if value:
        assert data["AGENTAPI_INITIAL_PROMPT"] == value
        assert len(data) == 5
    else:  # agentapi takes an empty prompt for none
        assert "AGENTAPI_INITIAL_PROMPT" not in data and len(data) == 4
    _check_output(objects)


@pytest.mark.parametrize("value", NASTY)
def test_session_and_owner_round_trip_even_unvalidated(settings, value):
    """build_spec refuses such session ids; the templates stay safe without it."""
    spec = dataclasses.replace(spec_for(settings), session=value, owner=value)
    objects = by_kind(render_agent(settings, spec))
    for obj in objects.values():
        assert obj["metadata"]["labels"]["agentproxy.io/session"] == value
        assert len(obj["metadata"]["labels"]) == 6
    assert objects["ConfigMap"]["data"]["AGENTPROXY_SESSION"] == value
    assert objects["StatefulSet"]["metadata"]["annotations"]["agentproxy.io/owner"] == value
    _check_output(list(objects.values()))


@pytest.mark.parametrize("value", NASTY[:12])
def test_command_arguments_round_trip(value):
    settings = settings_with()
    settings.agents.commands["echo"] = ["prog", value, "--last"]
    objects = by_kind(render_agent(settings, spec_for(settings)))
    assert container(objects)["args"][-3:] == ["prog", value, "--last"]
    _check_output(list(objects.values()))


def test_settings_strings_round_trip():
    work_dir = "/w: x #y\n- z: {{ q }}"
    settings = settings_with(f"k8s_mode.work_dir={work_dir}")
    objects = by_kind(render_agent(settings, spec_for(settings)))
    c = container(objects)
    assert c["workingDir"] == work_dir
    assert c["volumeMounts"] == [{"name": "data", "mountPath": work_dir}]
    assert c["env"] == [{"name": "HOME", "value": work_dir}]
    _check_output(list(objects.values()))


def test_refused_session_ids_never_reach_the_templates(settings):
    for value in ("s\nINJECTED: true", "s: x", "s #c", "s\u2028"):
        with pytest.raises(SpecError):
            spec_for(settings, session=value)


@pytest.mark.parametrize("value", NASTY)
def test_yaml_quote_is_one_line_and_exact(value):
    quoted = yaml_quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert quoted.isascii() and quoted.isprintable()
    assert yaml.safe_load(f"k: {quoted}\n") == {"k": value}
    assert yaml.safe_load(quoted) == value
