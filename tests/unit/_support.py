"""Helpers of the unit tests: settings, specs and manifests built without
reading the process environment or touching any cluster."""

from __future__ import annotations

from typing import Any

import pytest

from agentproxy.render import render_agent
from agentproxy.settings import LoadedSettings, Settings, SettingsError, load_settings
from agentproxy.spec import AgentSpec, build_spec


def load(*overrides: str, config_file: Any = None, environ: dict[str, str] | None = None) -> LoadedSettings:
    """``load_settings`` with an explicit environment (empty unless given)."""
    return load_settings(config_file, overrides, environ={} if environ is None else environ)


def settings_with(*overrides: str) -> Settings:
    return load(*overrides).settings


def spec_for(settings: Settings, agent_id: str = "a1", session: str = "s1", **kwargs: Any) -> AgentSpec:
    return build_spec(settings, session, agent_id, **kwargs)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rendered objects by kind; each kind must appear once."""
    kinds = [obj["kind"] for obj in objects]
    assert len(set(kinds)) == len(kinds), kinds
    return {obj["kind"]: obj for obj in objects}


def render(settings: Settings, **spec_kwargs: Any) -> dict[str, dict[str, Any]]:
    return by_kind(render_agent(settings, spec_for(settings, **spec_kwargs)))


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The only container of the StatefulSet's pod template."""
    containers = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def settings_error(*overrides: str, config_file: Any = None, environ: dict[str, str] | None = None) -> SettingsError:
    """The error that loading these settings raises (fails when none is raised)."""
    with pytest.raises(SettingsError) as info:
        load(*overrides, config_file=config_file, environ=environ)
    return info.value


def assert_message(error: Exception, *parts: str) -> None:
    """The one-line message of ``error`` contains every part."""
    text = str(error)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, f"{part!r} missing from {text!r}"
