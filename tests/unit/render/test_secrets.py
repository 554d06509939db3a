"""Credentials never end up in rendered manifests: env names that look like
secrets are refused, and a Secret is referenced by name only."""

from __future__ import annotations

import pytest

from agentproxy.render import RenderError, check_no_secrets, dump_json, dump_yaml, render_agent

from .._support import by_kind, container, settings_with, spec_for

SECRET_VALUE = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("name", [
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY",
    "SERVICE_CREDENTIALS", "SMTP_PASSWD", "openai_api_key", "MY_APIKEY", "SECRET", "TOKEN",
])
def test_secret_like_env_names_are_refused(settings, name):
    spec = spec_for(settings, env={"SAFE": "1", name: SECRET_VALUE})
    with pytest.raises(RenderError) as info:
        render_agent(settings, spec)
    err = info.value
    assert err.field == f"env.{name}"
    assert f"env.{name}" in str(err)
    assert "k8s_mode.secret_name" in str(err)
    assert SECRET_VALUE not in str(err)


@pytest.mark.parametrize("name", [
    "TOKENIZERS_PARALLELISM", "KEYBOARD_LAYOUT", "PASSWORDLESS_LOGIN", "MONKEY", "HOTKEYS", "LOG_LEVEL",
])
def test_harmless_names_are_accepted(settings, name):
    spec = spec_for(settings, env={name: "false"})
    check_no_secrets(spec)
    assert by_kind(render_agent(settings, spec))["ConfigMap"]["data"][name] == "false"


def test_secret_is_referenced_by_name_only():
    settings = settings_with("k8s_mode.secret_name=agent-credentials")
    objects = render_agent(settings, spec_for(settings))
    assert "Secret" not in [o["kind"] for o in objects]
    kinds = by_kind(objects)
    assert container(kinds)["envFrom"][1] == {"secretRef": {"name": "agent-credentials"}}
    text = dump_yaml(objects)
    assert text.count("agent-credentials") == 1
    assert dump_json(objects).count("agent-credentials") == 1
    assert "agent-credentials" not in str(kinds["ConfigMap"])


def test_secret_value_never_in_output_even_after_refusal(settings):
    good = spec_for(settings, env={"LOG_LEVEL": "debug"})
    text = dump_yaml(render_agent(settings, good)) + dump_json(render_agent(settings, good))
    assert SECRET_VALUE not in text
    with pytest.raises(RenderError):
        render_agent(settings, spec_for(settings, env={"OPENAI_API_KEY": SECRET_VALUE}))
