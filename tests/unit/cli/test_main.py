"""The command line: `render` and `config` output, and one-line errors with
the right exit status instead of tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentproxy.cli import main
from agentproxy.settings import CONFIG_ENV, ENV_VARS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The CLI reads the real environment: start each test without AGENTAPI_* variables."""
    for name in [*ENV_VARS, CONFIG_ENV]:
        monkeypatch.delenv(name, raising=False)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_render_yaml(capsys):
    code, out, err = _run(capsys, "render", "--session", "s1", "--agent", "a1", "--env", "FOO=a=b",
                          "--message", "hi: there", "--set", "k8s_mode.namespace=team-a")
    assert (code, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "PersistentVolumeClaim", "StatefulSet"]
    assert {d["metadata"]["namespace"] for d in docs} == {"team-a"}
    assert docs[0]["data"]["FOO"] == "a=b"
    assert docs[0]["data"]["AGENTAPI_INITIAL_PROMPT"] == "hi: there"


def test_render_json(capsys):
    code, out, err = _run(capsys, "render", "--session", "s1", "--agent", "a1", "-o", "json", "--type", "claude")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert listed["kind"] == "List" and len(listed["items"]) == 4
    assert listed["items"][3]["metadata"]["name"] == "agent-a1"


def test_render_without_agent_generates_an_id(capsys):
    code, out, _ = _run(capsys, "render", "--session", "s1")
    assert code == 0
    name = list(yaml.safe_load_all(out))[3]["metadata"]["name"]
    assert name.startswith("agent-") and len(name) == len("agent-") + 8


def test_render_uses_config_file(capsys, tmp_path):
    path = tmp_path / "agentproxy.yaml"
    path.write_text("k8s_mode:\n  image: reg.local/a:1\n")
    code, out, _ = _run(capsys, "render", "--session", "s1", "--agent", "a1", "--config", str(path))
    assert code == 0
    assert "image: reg.local/a:1" in out


@pytest.mark.parametrize("agent_id", ["Bad_ID", "a" * 47, "-a"])
def test_bad_agent_id(capsys, agent_id):
    code, out, err = _run(capsys, "render", "--session", "s1", f"--agent={agent_id}")
    assert code == 1 and out == ""
    line = _one_error_line(err)
    assert line.startswith("agentproxy: error: id: ") and "DNS-1123" in line


def test_missing_session(capsys):
    code, out, err = _run(capsys, "render", "--agent", "a1")
    assert code == 2 and out == ""
    assert "--session" in _one_error_line(err)


@pytest.mark.parametrize("argv,needle", [
    (["render", "--session", "s1", "--set", "server.port=abc"], "server.port='abc' (from --set server.port=abc)"),
    (["render", "--session", "s1", "--set", "nonsense"], "--set='nonsense'"),
    (["render", "--session", "s1", "--env", "OPENAI_API_KEY=sk-1"], "env.OPENAI_API_KEY"),
    (["render", "--session", "s1", "--env", "NOEQUALS"], "NAME=VALUE"),
    (["render", "--session", "s1", "--type", "nope"], "unknown agent type"),
    (["render", "--session", "s1", "--config", "/no/such/file.yaml"], "cannot be read"),
    (["render", "--session", "s1", "--set", "templates_dir=/no/such/dir"], "is not a directory"),
    (["render", "--session", "s1", "-o", "xml"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_errors_are_one_line(capsys, argv, needle):
    code, out, err = _run(capsys, *argv)
    assert code in (1, 2) and out == ""
    assert needle in _one_error_line(err)
    assert "sk-1" not in err


def test_config_shows_sources(capsys, monkeypatch, tmp_path):
    path = tmp_path / "agentproxy.json"
    path.write_text('{"k8s_mode": {"image": "from/file:1"}}')
    monkeypatch.setenv("AGENTAPI_K8S_MODE_NAMESPACE", "from-env")
    monkeypatch.setenv("AGENTAPI_CONFIG", str(path))
    code, out, err = _run(capsys, "config", "--set", "server.port=9999")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "  namespace: from-env  # from environment variable AGENTAPI_K8S_MODE_NAMESPACE" in lines
    assert "  port: 9999  # from --set server.port=9999" in lines
    assert f"  image: from/file:1  # from config file {path}" in lines
    assert "  host: 127.0.0.1" in lines  # defaults carry no comment
    shown = yaml.safe_load(out)
    assert shown["k8s_mode"]["resources"]["cpu_limit"] == "500m"
    assert shown["server"]["port"] == 9999


def test_config_output_stays_valid_yaml_with_line_breaks(capsys):
    code, out, _ = _run(capsys, "config", "--set", "local_mode.data_dir=/data\nx: 1")
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["local_mode"]["data_dir"] == "/data\nx: 1"
    assert "x" not in shown


def test_config_error(capsys, monkeypatch):
    monkeypatch.setenv("AGENTAPI_K8S_MODE_ENABLED", "maybe")
    code, out, err = _run(capsys, "config")
    assert code == 1 and out == ""
    line = _one_error_line(err)
    assert "k8s_mode.enabled='maybe'" in line and "AGENTAPI_K8S_MODE_ENABLED" in line and "boolean" in line


def _console_script() -> str:
    found = Path(sys.executable).parent / "agentproxy"
    if found.exists():
        return str(found)
    which = shutil.which("agentproxy")
    if which is None:
        pytest.fail("the agentproxy console script is not installed")
    return which


def test_installed_script_reports_bad_value_without_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    env["AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT"] = "lots"
    proc = subprocess.run([_console_script(), "render", "--session", "s1", "--agent", "a1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    line = _one_error_line(proc.stderr)
    assert "k8s_mode.resources.cpu_limit='lots'" in line
    assert "environment variable AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT" in line


def test_installed_script_renders(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    proc = subprocess.run([_console_script(), "render", "--session", "s1", "--agent", "a1", "-o", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["items"]) == 4
