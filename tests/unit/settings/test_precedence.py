"""Layering of settings: defaults < config file < environment < --set, and the
recorded source of every value."""

from __future__ import annotations

import json

import pytest

from agentproxy.settings import SettingsError, Source

from .._support import load

SPEC_ENV = [
    ("AGENTAPI_K8S_MODE_ENABLED", "true", "k8s_mode.enabled", True),
    ("AGENTAPI_K8S_MODE_NAMESPACE", "agents-prod", "k8s_mode.namespace", "agents-prod"),
    ("AGENTAPI_K8S_MODE_IMAGE", "registry.local/agents:1.2", "k8s_mode.image", "registry.local/agents:1.2"),
    ("AGENTAPI_K8S_MODE_RESOURCES_CPU_REQUEST", "250m", "k8s_mode.resources.cpu_request", "250m"),
    ("AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT", "2", "k8s_mode.resources.cpu_limit", "2"),
    ("AGENTAPI_K8S_MODE_RESOURCES_MEMORY_REQUEST", "128Mi", "k8s_mode.resources.memory_request", "128Mi"),
    ("AGENTAPI_K8S_MODE_RESOURCES_MEMORY_LIMIT", "4Gi", "k8s_mode.resources.memory_limit", "4Gi"),
    ("AGENTAPI_K8S_MODE_RESOURCES_STORAGE_SIZE", "20Gi", "k8s_mode.resources.storage_size", "20Gi"),
    ("AGENTAPI_SERVER_PORT", "9090", "server.port", 9090),
    ("AGENTAPI_LOCAL_MODE_PORTS_START", "9100", "local_mode.ports.start", 9100),
    ("AGENTAPI_TEMPLATES_DIR", "/srv/templates", "templates_dir", "/srv/templates"),
]


def _get(settings, path):
    for part in path.split("."):
        settings = getattr(settings, part)
    return settings


@pytest.mark.parametrize("name,raw,path,expected", SPEC_ENV, ids=[row[0] for row in SPEC_ENV])
def test_environment_variable_sets_its_setting(name, raw, path, expected):
    loaded = load(environ={name: raw})
    assert _get(loaded.settings, path) == expected
    assert loaded.source_of(path) == Source("env", name)
    others = [p for _, _, p, _ in SPEC_ENV if p != path]
    assert all(loaded.source_of(p).kind == "default" for p in others)


def test_unrelated_and_lowercase_variables_are_ignored():
    loaded = load(environ={"agentapi_server_port": "1", "AGENTAPI_NOPE": "x", "PATH": "/bin"})
    assert loaded.settings.server.port == 8080
    assert loaded.sources == {}


def _yaml(tmp_path, text, name="agentproxy.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


FILE_TEXT = """\
server:
  port: 7000
k8s_mode:
  namespace: from-file
  image: file/image:1
  resources:
    cpu_limit: 1
"""


def test_yaml_file_overrides_defaults(tmp_path):
    path = _yaml(tmp_path, FILE_TEXT)
    loaded = load(config_file=path)
    s = loaded.settings
    assert (s.server.port, s.k8s_mode.namespace, s.k8s_mode.image) == (7000, "from-file", "file/image:1")
    assert s.k8s_mode.resources.cpu_limit == "1"  # a YAML number kept as the quantity it spells
    assert s.k8s_mode.resources.cpu_request == "100m"
    assert loaded.source_of("server.port") == Source("file", str(path))
    assert loaded.source_of("k8s_mode.resources.cpu_request").kind == "default"


@pytest.mark.parametrize("suffix", [".yml", ".YAML"])
def test_other_yaml_suffixes(tmp_path, suffix):
    path = _yaml(tmp_path, "server:\n  port: 7001\n", "conf" + suffix)
    assert load(config_file=path).settings.server.port == 7001


def test_json_file_overrides_defaults(tmp_path):
    path = tmp_path / "agentproxy.json"
    path.write_text(json.dumps({"k8s_mode": {"enabled": True, "namespace": "json-ns"}, "server": {"port": 7002}}))
    loaded = load(config_file=str(path))
    assert loaded.settings.k8s_mode.enabled is True
    assert loaded.settings.k8s_mode.namespace == "json-ns"
    assert loaded.settings.server.port == 7002
    assert loaded.source_of("k8s_mode.enabled") == Source("file", str(path))


def test_empty_yaml_file_keeps_defaults(tmp_path):
    loaded = load(config_file=_yaml(tmp_path, "# nothing yet\n"))
    assert loaded.settings.server.port == 8080 and loaded.sources == {}


def test_config_file_named_by_environment(tmp_path):
    path = _yaml(tmp_path, FILE_TEXT)
    loaded = load(environ={"AGENTAPI_CONFIG": str(path)})
    assert loaded.settings.k8s_mode.namespace == "from-file"
    assert loaded.source_of("k8s_mode.namespace") == Source("file", str(path))


def test_config_file_argument_wins_over_environment(tmp_path):
    named = _yaml(tmp_path, "k8s_mode:\n  namespace: by-env\n", "env.yaml")
    given = _yaml(tmp_path, "k8s_mode:\n  namespace: by-arg\n", "arg.yaml")
    loaded = load(config_file=given, environ={"AGENTAPI_CONFIG": str(named)})
    assert loaded.settings.k8s_mode.namespace == "by-arg"


def test_empty_config_variable_means_no_file():
    assert load(environ={"AGENTAPI_CONFIG": ""}).sources == {}


def test_environment_overrides_file(tmp_path):
    path = _yaml(tmp_path, FILE_TEXT)
    loaded = load(config_file=path, environ={"AGENTAPI_K8S_MODE_NAMESPACE": "from-env"})
    assert loaded.settings.k8s_mode.namespace == "from-env"
    assert loaded.source_of("k8s_mode.namespace") == Source("env", "AGENTAPI_K8S_MODE_NAMESPACE")
    assert loaded.settings.k8s_mode.image == "file/image:1"
    assert loaded.source_of("k8s_mode.image") == Source("file", str(path))


def test_set_overrides_environment_and_file(tmp_path):
    path = _yaml(tmp_path, FILE_TEXT)
    environ = {"AGENTAPI_K8S_MODE_NAMESPACE": "from-env", "AGENTAPI_SERVER_PORT": "7500"}
    loaded = load("k8s_mode.namespace=from-set", config_file=path, environ=environ)
    assert loaded.settings.k8s_mode.namespace == "from-set"
    assert loaded.source_of("k8s_mode.namespace") == Source("set", "k8s_mode.namespace=from-set")
    assert str(loaded.source_of("k8s_mode.namespace")) == "--set k8s_mode.namespace=from-set"
    assert loaded.settings.server.port == 7500
    assert str(loaded.source_of("server.port")) == "environment variable AGENTAPI_SERVER_PORT"
    assert str(loaded.source_of("k8s_mode.image")) == f"config file {path}"


def test_later_set_wins():
    loaded = load("server.port=1001", "server.port=1002")
    assert loaded.settings.server.port == 1002
    assert loaded.source_of("server.port") == Source("set", "server.port=1002")


def test_set_value_may_contain_equals_sign():
    assert load("k8s_mode.image=reg.local/img@sha256=abc").settings.k8s_mode.image == "reg.local/img@sha256=abc"


def test_optional_setting_cleared_from_text():
    loaded = load("k8s_mode.secret_name=creds", "k8s_mode.secret_name=")
    assert loaded.settings.k8s_mode.secret_name is None


def test_agent_commands_merge_key_by_key(tmp_path):
    path = _yaml(tmp_path, "agents:\n  commands:\n    aider: [aider, --yes]\n")
    loaded = load('agents.commands.goose=goose run --quiet', config_file=path)
    commands = loaded.settings.agents.commands
    assert commands["aider"] == ["aider", "--yes"]
    assert commands["goose"] == ["goose", "run", "--quiet"]
    assert commands["claude"] == ["claude"]
    assert loaded.source_of("agents.commands.aider") == Source("file", str(path))
    assert loaded.source_of("agents.commands.goose").kind == "set"
    assert loaded.source_of("agents.commands.claude").kind == "default"


def test_a_bare_triple_question_mark_is_refused_not_silently_ignored():
    with pytest.raises(SettingsError, match="reserved"):
        load("local_mode.data_dir=???")


def test_agent_commands_from_environment_as_yaml():
    loaded = load(environ={"AGENTAPI_AGENTS_COMMANDS": "{aider: [aider, --model, sonnet]}"})
    assert loaded.settings.agents.commands["aider"] == ["aider", "--model", "sonnet"]
    assert loaded.settings.agents.commands["echo"]  # the other defaults stay


def test_values_are_taken_literally_not_interpolated():
    """``${...}`` and ``???`` inside values are ordinary text (shell commands use them)."""
    loaded = load("k8s_mode.image=${oc.env:HOME}", "agents.commands.sh=[sh, -c, 'echo ${FOO} ???']",
                  "local_mode.data_dir=/tmp/???x", environ={"AGENTAPI_LOCAL_MODE_AGENTAPI_BINARY": r"C:\${x}"})
    s = loaded.settings
    assert s.k8s_mode.image == "${oc.env:HOME}"
    assert s.agents.commands["sh"] == ["sh", "-c", "echo ${FOO} ???"]
    assert s.local_mode.data_dir == "/tmp/???x"
    assert s.local_mode.agentapi_binary == r"C:\${x}"
