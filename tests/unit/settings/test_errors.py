"""Errors of the config file and of --set arguments: unknown keys (with a
suggestion), malformed overrides, unreadable or malformed files."""

from __future__ import annotations

import pytest

from agentproxy.settings import SettingsError

from .._support import assert_message, load, settings_error


def _file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_in_file_suggests_the_close_one(tmp_path):
    path = _file(tmp_path, "s.yaml", "k8s_mode:\n  namespce: agents\n")
    err = settings_error(config_file=path)
    assert err.key == "k8s_mode.namespce"
    assert_message(err, "k8s_mode.namespce", f"config file {path}", "is not a known setting",
                   "did you mean k8s_mode.namespace?")


def test_unknown_nested_key_in_json_file(tmp_path):
    path = _file(tmp_path, "s.json", '{"k8s_mode": {"resources": {"cpu_limt": "1"}}}')
    assert_message(settings_error(config_file=path), "k8s_mode.resources.cpu_limt", str(path),
                   "did you mean k8s_mode.resources.cpu_limit?")


def test_unknown_top_level_key(tmp_path):
    path = _file(tmp_path, "s.yaml", "sever:\n  port: 1\n")
    assert_message(settings_error(config_file=path), "sever", "did you mean server?")


def test_unknown_key_without_close_match_lists_known_keys(tmp_path):
    path = _file(tmp_path, "s.yaml", "server:\n  zzzzzz: 1\n")
    assert_message(settings_error(config_file=path), "server.zzzzzz",
                   "known keys here: allow_unauthenticated_remote, api_keys, host, max_body, oidc, other_mode_agents, port")


def test_unknown_set_key_suggests_the_close_one():
    err = settings_error("k8s_mode.imag=x")
    assert err.key == "k8s_mode.imag"
    assert_message(err, "k8s_mode.imag", "--set k8s_mode.imag=x", "is not a known setting",
                   "did you mean k8s_mode.image?")


def test_set_of_a_section_is_refused():
    assert_message(settings_error("k8s_mode=x"), "k8s_mode", "--set k8s_mode=x", "is not a known setting")


@pytest.mark.parametrize("item", ["k8s_mode.namespace", "=value", "  =x", ""])
def test_malformed_set(item):
    err = settings_error(item)
    assert err.key == "--set"
    assert_message(err, f"--set={item!r}", "must look like dotted.key=value")


def test_config_file_with_bad_extension(tmp_path):
    path = _file(tmp_path, "settings.toml", "[server]\nport = 1\n")
    err = settings_error(config_file=path)
    assert err.key == "config"
    assert_message(err, str(path), "must be a .yaml, .yml or .json file")


def test_missing_config_file(tmp_path):
    path = tmp_path / "absent.yaml"
    err = settings_error(config_file=path)
    assert_message(err, "config=", str(path), "cannot be read")


def test_missing_config_file_named_by_environment(tmp_path):
    path = tmp_path / "absent.yml"
    err = settings_error(environ={"AGENTAPI_CONFIG": str(path)})
    assert_message(err, str(path), "cannot be read")


def test_invalid_yaml_names_the_position(tmp_path):
    path = _file(tmp_path, "s.yaml", "server:\n  port: [1\n")
    assert_message(settings_error(config_file=path), str(path), "is not valid YAML (line ")


def test_invalid_json_names_the_position(tmp_path):
    path = _file(tmp_path, "s.json", '{"server": ')
    assert_message(settings_error(config_file=path), str(path), "is not valid JSON (line 1")


@pytest.mark.parametrize("name,text", [("s.yaml", "- server\n- port\n"), ("s.json", "[1, 2]"), ("s.yml", "just text\n")])
def test_top_level_must_be_a_mapping(tmp_path, name, text):
    path = _file(tmp_path, name, text)
    assert_message(settings_error(config_file=path), str(path), "must contain a mapping of settings at the top level")


def test_settings_error_fields():
    with pytest.raises(SettingsError) as info:
        load(environ={"AGENTAPI_SERVER_PORT": "x"})
    err = info.value
    assert (err.key, err.value, err.rule) == ("server.port", "x", "must be an integer")
    assert str(err.source) == "environment variable AGENTAPI_SERVER_PORT"
    assert isinstance(err, ValueError)
