"""A Claude Code agent's manifests in k8s mode: its home prepared on its volume by the
container's own command before agentapi, the model's key from the Secret by reference
only, the endpoint from the settings, and the restricted Pod Security context kept.

The last test runs the rendered command for real (with this machine's Python and a small
program in agentapi's place): the home is prepared, and the program runs in it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from agentproxy.agenthome import CONFIG_FILE, SETTINGS_FILE, key_tail
from agentproxy.render import dump_json, dump_yaml, missing_key, render_agent
from agentproxy.settings import AGENT_PORT

from .._support import by_kind, container, load, settings_with, spec_for

KEY = "sk-ant-api03-" + "k" * 40 + "-tail-of-the-key"
CLAUDE = ("k8s_mode.secret_name=model-credentials", "agents.claude.base_url=http://198.18.0.1:8765",
          "agents.claude.permission_mode=dontAsk")


def _claude(*overrides: str, **spec_kwargs):
    settings = settings_with(*CLAUDE, *overrides)
    return by_kind(render_agent(settings, spec_for(settings, agent_type="claude", message="hello", **spec_kwargs)))


def test_the_container_prepares_the_home_then_runs_agentapi_around_claude():
    c = container(_claude())
    assert c["command"] == ["python3"]
    state = "/home/agent/work/.agentproxy/agentapi-state.json"
    assert c["args"] == ["-m", "agentproxy.launcher", "--save-interval", "2", "--work-dir", "/home/agent/work",
                         "--claude-home", "--permission-mode", "dontAsk", "--",
                         "agentapi", "server", "--port", str(AGENT_PORT), "--type", "claude",
                         "--state-file", state, "--", "claude"]
    assert c["workingDir"] == "/home/agent/work"
    assert {"name": "HOME", "value": "/home/agent/work/.agentproxy/home"} in c["env"]
    # The probes are the same as every agent's: the conversation back, then /status.
    assert c["startupProbe"]["exec"]["command"][:3] == ["python3", "-m", "agentproxy.restore"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/status"


def test_without_a_permission_mode_the_home_keeps_claude_codes_own():
    settings = settings_with("k8s_mode.secret_name=model-credentials")
    args = container(by_kind(render_agent(settings, spec_for(settings, agent_type="claude"))))["args"]
    assert "--permission-mode" not in args
    assert args[:8] == ["-m", "agentproxy.launcher", "--save-interval", "2", "--work-dir", "/home/agent/work",
                        "--claude-home", "--"]


def test_the_key_is_a_reference_to_the_secret_and_the_endpoint_a_setting():
    objects = _claude()
    c = container(objects)
    assert {"name": "ANTHROPIC_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "model-credentials", "key": "ANTHROPIC_API_KEY"}}} in c["env"]
    data = objects["ConfigMap"]["data"]
    assert data["ANTHROPIC_BASE_URL"] == "http://198.18.0.1:8765"
    assert data["DISABLE_AUTOUPDATER"] == data["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert data["AGENTAPI_INITIAL_PROMPT"] == "hello"
    assert not any("KEY" in name for name in data)


def test_the_secrets_key_is_the_one_api_key_env_names():
    c = container(_claude("agents.claude.api_key_env=TEAM_ANTHROPIC_KEY"))
    refs = [v for v in c["env"] if "valueFrom" in v]
    assert refs == [{"name": "ANTHROPIC_API_KEY",
                     "valueFrom": {"secretKeyRef": {"name": "model-credentials", "key": "TEAM_ANTHROPIC_KEY"}}}]


def test_without_a_secret_no_key_is_referenced_and_other_agents_get_none():
    settings = settings_with("agents.claude.base_url=http://gw.example:8080")
    c = container(by_kind(render_agent(settings, spec_for(settings, agent_type="claude"))))
    assert not [v for v in c["env"] if "valueFrom" in v]
    echo = by_kind(render_agent(settings_with(*CLAUDE), spec_for(settings_with(*CLAUDE), agent_type="echo")))
    c = container(echo)
    assert c["command"] == ["python3"] and "--claude-home" not in c["args"]
    assert c["env"] == [{"name": "HOME", "value": "/home/agent/work"}]
    assert "ANTHROPIC_BASE_URL" not in echo["ConfigMap"]["data"]


def test_a_request_env_wins_over_the_endpoint_setting():
    data = _claude(env={"ANTHROPIC_BASE_URL": "http://other:1"})["ConfigMap"]["data"]
    assert data["ANTHROPIC_BASE_URL"] == "http://other:1"


def test_restricted_pod_security_and_non_root_are_kept():
    objects = _claude()
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert [c["name"] for c in pod["containers"]] == ["agentapi"] and "initContainers" not in pod
    sc = container(objects)["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                  "seccompProfile": {"type": "RuntimeDefault"}}


def test_the_key_never_appears_in_render_output():
    """`agentproxy render` with the key in its environment, under both names the settings may
    give it: neither YAML nor JSON holds it (render never reads it)."""
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "TEAM_ANTHROPIC_KEY": KEY}
    for output in ("yaml", "json"):
        argv = [sys.executable, "-m", "agentproxy", "render", "--session", "s1", "--agent", "c1", "--type", "claude",
                "--message", "hi", "-o", output, *(a for s in (*CLAUDE, "agents.claude.api_key_env=TEAM_ANTHROPIC_KEY")
                                                   for a in ("--set", s))]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "secretKeyRef" in done.stdout
        assert KEY not in done.stdout and key_tail(KEY) not in done.stdout and KEY not in done.stderr
    objects = render_agent(load(*CLAUDE, environ={"ANTHROPIC_API_KEY": KEY}).settings,
                           spec_for(settings_with(*CLAUDE), agent_type="claude"))
    assert KEY not in dump_yaml(objects) and KEY not in dump_json(objects)


def test_the_rendered_command_prepares_the_home_and_runs_agentapi_in_it(tmp_path):
    """The container's command, run here: the work directory stands for the volume and a small
    Python program for agentapi (it prints the environment it got)."""
    c = container(_claude())
    work = tmp_path / "volume"
    work.mkdir()
    args = [str(work) if a == "/home/agent/work" else a for a in c["args"]]
    program = args.index("agentapi")
    shown = tmp_path / "shown.json"
    args[program:] = [sys.executable, "-c",
                      f"import json, os; json.dump(dict(os.environ), open({str(shown)!r}, 'w'))"]
    env = {"PATH": os.environ.get("PATH", os.defpath), "ANTHROPIC_API_KEY": KEY, "HOME": str(work)}
    done = subprocess.run([sys.executable, *args], env=env, cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout + done.stderr
    home = Path(os.path.realpath(work)) / ".agentproxy" / "home"
    seen = json.loads(shown.read_text())
    assert seen["HOME"] == str(home)
    assert seen["DISABLE_AUTOUPDATER"] == seen["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    config = json.loads((home / CONFIG_FILE).read_text())
    assert config["customApiKeyResponses"]["approved"] == [key_tail(KEY)]
    assert config["projects"][os.path.realpath(work)]["hasTrustDialogAccepted"] is True
    assert json.loads((home / SETTINGS_FILE).read_text())["permissions"]["defaultMode"] == "dontAsk"
    assert stat.S_IMODE((home / CONFIG_FILE).stat().st_mode) == 0o600


def test_the_entry_point_needs_only_the_standard_library(tmp_path):
    """The agent image holds agentproxy without its dependencies: the module the container runs
    first imports nothing beyond the standard library."""
    code = ("import sys; import agentproxy.agenthome; "
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
            "{'aiohttp', 'kr8s', 'omegaconf', 'jinja2', 'yaml', 'psutil', 'prometheus_client'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_failed_preparation_is_one_line_and_runs_nothing(tmp_path):
    work = tmp_path / "volume"
    home = work / ".agentproxy" / "home"
    home.mkdir(parents=True)
    (home / CONFIG_FILE).write_text("{not json")
    marker = tmp_path / "ran"
    done = subprocess.run([sys.executable, "-m", "agentproxy.agenthome", "--work-dir", str(work), "--",
                           sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "is not JSON" in done.stderr
    assert not marker.exists()


def test_a_claude_agent_without_a_secret_is_refused_naming_the_setting():
    settings = settings_with()
    problem = missing_key(settings, spec_for(settings, agent_type="claude"))
    assert problem is not None and "k8s_mode.secret_name" in problem and "ANTHROPIC_API_KEY" in problem
    assert missing_key(settings, spec_for(settings, agent_type="echo")) is None
    with_secret = settings_with("k8s_mode.secret_name=model-credentials")
    assert missing_key(with_secret, spec_for(with_secret, agent_type="claude")) is None
