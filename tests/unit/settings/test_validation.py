"""Rules of setting values: each error names the key, the value, where it came
from and the rule it broke, in one line."""

from __future__ import annotations

import pytest

from agentproxy.naming import DNS_LABEL_RULE
from agentproxy.quantity import QUANTITY_RULE
from agentproxy.settings.fields import BOOL_RULE, DURATION_RULE

from .._support import assert_message, load, settings_error, settings_with

QUANTITY_VARS = [
    "AGENTAPI_K8S_MODE_RESOURCES_CPU_REQUEST",
    "AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT",
    "AGENTAPI_K8S_MODE_RESOURCES_MEMORY_REQUEST",
    "AGENTAPI_K8S_MODE_RESOURCES_MEMORY_LIMIT",
    "AGENTAPI_K8S_MODE_RESOURCES_STORAGE_SIZE",
]


@pytest.mark.parametrize("name", QUANTITY_VARS)
@pytest.mark.parametrize("raw", ["lots", "1GB", "1 Gi", "", "Mi"])
def test_bad_quantity_from_environment(name, raw):
    err = settings_error(environ={name: raw})
    key = name.removeprefix("AGENTAPI_").lower().replace("k8s_mode_resources_", "k8s_mode.resources.")
    assert err.key == key
    assert_message(err, f"{key}={raw!r}", f"environment variable {name}", QUANTITY_RULE)


def test_zero_or_negative_quantity_is_refused():
    err = settings_error("k8s_mode.resources.storage_size=0")
    assert_message(err, "k8s_mode.resources.storage_size='0'", "--set k8s_mode.resources.storage_size=0", "positive")
    err = settings_error("k8s_mode.resources.cpu_limit=-1")
    assert_message(err, "k8s_mode.resources.cpu_limit='-1'", "positive")


def test_cpu_request_above_limit(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("k8s_mode:\n  resources:\n    cpu_request: 750m\n")
    err = settings_error(config_file=path)
    assert err.key == "k8s_mode.resources.cpu_request"
    assert_message(err, "cpu_request='750m'", f"config file {path}", "must not exceed k8s_mode.resources.cpu_limit (500m)")


def test_memory_request_above_limit_from_environment():
    err = settings_error(environ={"AGENTAPI_K8S_MODE_RESOURCES_MEMORY_LIMIT": "128Mi"})
    assert_message(err, "k8s_mode.resources.memory_request='256Mi'", "must not exceed k8s_mode.resources.memory_limit (128Mi)")


def test_request_equal_to_limit_across_units_is_fine():
    s = load("k8s_mode.resources.cpu_request=0.5", "k8s_mode.resources.memory_request=0.5Gi",
             "k8s_mode.resources.memory_limit=512Mi").settings
    assert s.k8s_mode.resources.cpu_request == "0.5"


@pytest.mark.parametrize("namespace", ["Agents", "agents_prod", "-agents", "agents-", "a" * 64, "a.b", "", "ns\n"])
def test_namespace_must_be_a_dns_label(namespace):
    err = settings_error(environ={"AGENTAPI_K8S_MODE_NAMESPACE": namespace})
    assert err.key == "k8s_mode.namespace"
    assert_message(err, f"k8s_mode.namespace={namespace!r}", "environment variable AGENTAPI_K8S_MODE_NAMESPACE",
                   DNS_LABEL_RULE)


def test_namespace_of_63_characters_is_fine():
    assert load(f"k8s_mode.namespace={'a' * 63}").settings.k8s_mode.namespace == "a" * 63


@pytest.mark.parametrize("raw,expected", [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("TRUE", True), (" No ", False),
])
def test_boolean_spellings(raw, expected):
    assert load(environ={"AGENTAPI_K8S_MODE_ENABLED": raw}).settings.k8s_mode.enabled is expected
    assert load(f"k8s_mode.force_conflicts={raw}").settings.k8s_mode.force_conflicts is expected


@pytest.mark.parametrize("raw", ["maybe", "on", "2", "", "t"])
def test_bad_booleans(raw):
    err = settings_error(environ={"AGENTAPI_K8S_MODE_ENABLED": raw})
    assert err.key == "k8s_mode.enabled"
    assert_message(err, f"k8s_mode.enabled={raw!r}", "environment variable AGENTAPI_K8S_MODE_ENABLED", BOOL_RULE)


@pytest.mark.parametrize("text,value", [
    ('"abc"', "'abc'"), ("[8080]", "[8080]"), ("true", "True"), ("80.5", "80.5"), ("{a: 1}", "{'a': 1}"),
])
def test_port_of_wrong_type_in_file(tmp_path, text, value):
    path = tmp_path / "settings.yaml"
    path.write_text(f"server:\n  port: {text}\n")
    err = settings_error(config_file=path)
    assert err.key == "server.port"
    assert_message(err, f"server.port={value}", f"config file {path}", "must be an integer")


def test_string_setting_of_wrong_type_in_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"k8s_mode": {"namespace": ["a", "b"]}}')
    assert_message(settings_error(config_file=path), "k8s_mode.namespace=['a', 'b']", str(path), "must be a string")


def test_section_given_as_scalar(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("k8s_mode: on\n")
    assert_message(settings_error(config_file=path), "k8s_mode=True", str(path), "must be a mapping")


def test_port_from_text_must_be_an_integer():
    err = settings_error("server.port=abc")
    assert_message(err, "server.port='abc'", "--set server.port=abc", "must be an integer")
    err = settings_error(environ={"AGENTAPI_LOCAL_MODE_PORTS_START": "9000.0"})
    assert_message(err, "local_mode.ports.start='9000.0'", "AGENTAPI_LOCAL_MODE_PORTS_START", "must be an integer")


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_port_range(port):
    assert_message(settings_error(f"server.port={port}"), f"server.port={int(port)}", "between 1 and 65535")


def test_port_range_start_after_end():
    err = settings_error("local_mode.ports.start=9500", "local_mode.ports.end=9400")
    assert_message(err, "local_mode.ports.start=9500", "must not exceed local_mode.ports.end (9400)")


@pytest.mark.parametrize("override,key,rule", [
    ("k8s_mode.image=my image", "k8s_mode.image", "without spaces"),
    ("k8s_mode.image_pull_policy=Sometimes", "k8s_mode.image_pull_policy", "Always, IfNotPresent, Never"),
    ("k8s_mode.pvc_retention_when_deleted=Keep", "k8s_mode.pvc_retention_when_deleted", "Retain, Delete"),
    ("k8s_mode.pod_address=ip", "k8s_mode.pod_address", "dns, pod_ip"),
    ("k8s_mode.work_dir=work", "k8s_mode.work_dir", "absolute path"),
    ("k8s_mode.run_as_user=0", "k8s_mode.run_as_user", "non-root"),
    ("k8s_mode.secret_name=Bad_Name", "k8s_mode.secret_name", "DNS-1123 subdomain"),
    ("k8s_mode.storage_class=-x", "k8s_mode.storage_class", "DNS-1123 subdomain"),
    ("server.host= ", "server.host", "must not be empty"),
    ("agents.default_type=nope", "agents.default_type", "configured agent types"),
    ("agents.claude.api_key_env=MY-KEY", "agents.claude.api_key_env", "must name an environment variable"),
    ("agents.claude.base_url=llm.example.com", "agents.claude.base_url", "http:// or https:// URL"),
    ("agents.claude.base_url=https://a b", "agents.claude.base_url", "http:// or https:// URL"),
    ("agents.claude.permission_mode=yolo", "agents.claude.permission_mode", "dontAsk, auto, bypassPermissions"),
])
def test_other_rules(override, key, rule):
    err = settings_error(override)
    assert err.key == key
    assert_message(err, key, f"--set {override}", rule)


def test_agent_type_names_are_checked():
    err = settings_error("agents.commands.My_Agent=run")
    assert_message(err, "agents.commands.My_Agent", "lowercase letters")


def test_bad_commands():
    assert_message(settings_error("agents.commands.x=[]"), "agents.commands.x", "non-empty command")
    assert_message(settings_error("agents.commands.x=say 'unclosed"), "agents.commands.x", "shell command line")
    assert_message(settings_error(environ={"AGENTAPI_AGENTS_COMMANDS": "[a, b]"}), "agents.commands",
                   "AGENTAPI_AGENTS_COMMANDS", "mapping of agent type")


def test_line_break_in_set_text_keeps_the_message_on_one_line():
    err = settings_error("k8s_mode.image=img\n")
    assert_message(err, "k8s_mode.image='img\\n'", "--set 'k8s_mode.image=img\\n'", "without spaces")


@pytest.mark.parametrize("text,expected", [("true", True), ("no", False), ('"yes"', True), ("0", False), ('"1"', True)])
def test_booleans_in_a_file(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(f"k8s_mode:\n  enabled: {text}\n")
    assert load(config_file=path).settings.k8s_mode.enabled is expected


def test_bad_boolean_in_a_json_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"k8s_mode": {"enabled": "maybe"}}')
    assert_message(settings_error(config_file=path), "k8s_mode.enabled='maybe'", f"config file {path}", BOOL_RULE)
    path.write_text('{"k8s_mode": {"enabled": 2}}')
    assert_message(settings_error(config_file=path), "k8s_mode.enabled=2", BOOL_RULE)


@pytest.mark.parametrize("raw, seconds", [("2", 2.0), ("1.5", 1.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0),
                                          ("1h", 3600.0), (" 10 s ", 10.0), (".25", 0.25)])
def test_durations_take_seconds_or_a_unit(raw, seconds):
    settings = load(f"agents.first_message_timeout={raw}").settings
    assert settings.agents.first_message_timeout == seconds


def test_durations_from_a_file_keep_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("agents:\n  first_message_timeout: 90\nlocal_mode:\n  state_save_interval: 750ms\n")
    settings = load(config_file=str(path)).settings
    assert (settings.agents.first_message_timeout, settings.local_mode.state_save_interval) == (90.0, 0.75)


@pytest.mark.parametrize("raw", ["soon", "1d", "-1", "5 minutes", "", "1e3"])
def test_a_bad_duration_names_the_rule(raw):
    err = settings_error(environ={"AGENTAPI_LOCAL_MODE_STATE_SAVE_INTERVAL": raw})
    assert_message(err, f"local_mode.state_save_interval={raw!r}",
                   "environment variable AGENTAPI_LOCAL_MODE_STATE_SAVE_INTERVAL", DURATION_RULE)


def test_a_zero_duration_is_refused():
    err = settings_error("agents.first_message_timeout=0")
    assert_message(err, "agents.first_message_timeout", "must be a positive duration")


def test_supervision_timings_are_durations_with_rules():
    settings = load("local_mode.supervision.stop_grace=500ms", "local_mode.supervision.crash_loop_failures=3").settings
    assert (settings.local_mode.supervision.stop_grace, settings.local_mode.supervision.crash_loop_failures) == (0.5, 3)
    assert load("local_mode.supervision.stop_grace=0").settings.local_mode.supervision.stop_grace == 0.0
    err = settings_error(environ={"AGENTAPI_LOCAL_MODE_SUPERVISION_START_TIMEOUT": "0"})
    assert_message(err, "local_mode.supervision.start_timeout", "must be a positive duration")
    err = settings_error("local_mode.supervision.backoff_initial=2m")
    assert_message(err, "local_mode.supervision.backoff_initial", "must not exceed local_mode.supervision.backoff_max")
    err = settings_error("local_mode.supervision.launch_concurrency=0")
    assert_message(err, "local_mode.supervision.launch_concurrency", "must be 1 or more")
    err = settings_error("k8s_mode.api.max_in_flight=0")
    assert_message(err, "k8s_mode.api.max_in_flight", "must be 1 or more")
    err = settings_error("local_mode.supervision.sample_interval=often")
    assert_message(err, "local_mode.supervision.sample_interval='often'", DURATION_RULE)


def test_the_agents_cpu_priority_is_a_nice_value():
    assert load().settings.local_mode.agent_nice == 10
    assert load("local_mode.agent_nice=0").settings.local_mode.agent_nice == 0
    for bad in ("20", "-1"):
        err = settings_error(f"local_mode.agent_nice={bad}")
        assert_message(err, "local_mode.agent_nice", "must be a nice value between 0 and 19")


def test_idle_culling_settings_are_optional_durations():
    settings = load(environ={"AGENTAPI_AGENTS_IDLE_TIMEOUT": "30m", "AGENTAPI_AGENTS_MAX_AGE": "168h",
                             "AGENTAPI_AGENTS_RESUME_WAIT": "30s"}).settings
    assert (settings.agents.idle_timeout, settings.agents.max_age, settings.agents.resume_wait) == (1800, 604800, 30)
    assert load("agents.idle_timeout=").settings.agents.idle_timeout is None  # unset again: off
    err = settings_error("agents.idle_timeout=0")
    assert_message(err, "agents.idle_timeout", "must be a positive duration, or unset for no idle culling")
    err = settings_error(environ={"AGENTAPI_AGENTS_MAX_AGE": "a week"})
    assert_message(err, "agents.max_age='a week'", "environment variable AGENTAPI_AGENTS_MAX_AGE", DURATION_RULE)
    err = settings_error("agents.resume_wait=-1")
    assert_message(err, "agents.resume_wait", DURATION_RULE)


def test_claude_settings_that_follow_the_rules():
    settings = settings_with("agents.claude.api_key_env=TEAM_KEY", "agents.claude.base_url=https://gw.example.com/llm",
                             "agents.claude.permission_mode=acceptEdits")
    assert (settings.agents.claude.api_key_env, settings.agents.claude.base_url,
            settings.agents.claude.permission_mode) == ("TEAM_KEY", "https://gw.example.com/llm", "acceptEdits")
    defaults = settings_with().agents.claude
    assert (defaults.api_key_env, defaults.base_url, defaults.permission_mode) == ("ANTHROPIC_API_KEY", None, None)
