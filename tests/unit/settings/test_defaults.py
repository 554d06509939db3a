"""Built-in defaults of the settings and the table of their environment variables."""

from __future__ import annotations

import re

from agentproxy.settings import ENV_VARS, LEAVES, Settings
from agentproxy.settings.fields import ENV_PREFIX

from .._support import load


def test_spec_defaults_of_k8s_mode_and_server():
    s = load().settings
    assert s.k8s_mode.enabled is False
    assert s.k8s_mode.namespace == "agentapi-proxy"
    assert s.k8s_mode.image == "agentapi-proxy:latest"
    res = s.k8s_mode.resources
    assert (res.cpu_request, res.cpu_limit) == ("100m", "500m")
    assert (res.memory_request, res.memory_limit) == ("256Mi", "512Mi")
    assert res.storage_size == "1Gi"
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)


def test_loaded_defaults_equal_the_schema_and_come_from_default():
    loaded = load()
    assert loaded.settings == Settings()
    for path in LEAVES:
        assert loaded.source_of(path).kind == "default", path
    assert str(loaded.source_of("server.port")) == "default"


def test_every_leaf_has_its_own_environment_variable():
    names = [leaf.env_var for leaf in LEAVES.values()]
    assert len(names) == len(set(names))
    assert len(ENV_VARS) == len(LEAVES)
    for path, leaf in LEAVES.items():
        assert leaf.env_var == ENV_PREFIX + path.replace(".", "_").upper()
        assert re.fullmatch(r"AGENTAPI_[A-Z0-9_]+", leaf.env_var)
        assert ENV_VARS[leaf.env_var] is leaf


def test_spec_environment_variables_are_in_the_table():
    expected = {
        "AGENTAPI_K8S_MODE_ENABLED": "k8s_mode.enabled",
        "AGENTAPI_K8S_MODE_NAMESPACE": "k8s_mode.namespace",
        "AGENTAPI_K8S_MODE_IMAGE": "k8s_mode.image",
        "AGENTAPI_K8S_MODE_RESOURCES_CPU_REQUEST": "k8s_mode.resources.cpu_request",
        "AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT": "k8s_mode.resources.cpu_limit",
        "AGENTAPI_K8S_MODE_RESOURCES_MEMORY_REQUEST": "k8s_mode.resources.memory_request",
        "AGENTAPI_K8S_MODE_RESOURCES_MEMORY_LIMIT": "k8s_mode.resources.memory_limit",
        "AGENTAPI_K8S_MODE_RESOURCES_STORAGE_SIZE": "k8s_mode.resources.storage_size",
        "AGENTAPI_SERVER_PORT": "server.port",
        "AGENTAPI_LOCAL_MODE_PORTS_START": "local_mode.ports.start",
        "AGENTAPI_TEMPLATES_DIR": "templates_dir",
    }
    for name, path in expected.items():
        assert ENV_VARS[name].path == path


def test_loading_does_not_share_mutable_defaults():
    first = load("agents.commands.extra=extra --flag").settings
    second = load().settings
    assert "extra" in first.agents.commands
    assert "extra" not in second.agents.commands
    assert "extra" not in Settings().agents.commands
