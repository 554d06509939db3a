"""Agents of the other mode at start-up: what is said, when it refuses, and which
local agents count as still running."""

from __future__ import annotations

import json
import os
import sys

import psutil
import pytest

from agentproxy.backends import modeswitch
from agentproxy.backends.modeswitch import Leftovers, find_local, verdict
from agentproxy.spec import build_spec
from testenv.ports import free_port

from .._support import settings_with


def test_refusing_says_which_agents_where_and_what_to_do():
    message, refuse = verdict(Leftovers("k8s", "namespace agents of https://api:6443", ("s/a1", "s/a2")), "refuse")
    assert refuse
    assert message.startswith("k8s mode has 2 agents (s/a1, s/a2) in namespace agents of https://api:6443")
    assert "k8s_mode.enabled=true" in message and "agentproxy agents rm SESSION ID" in message
    assert "set server.other_mode_agents=warn" in message and message.endswith("Nothing was deleted.")


def test_warning_starts_anyway_and_long_lists_are_counted():
    agents = tuple(f"s/a{i}" for i in range(8))
    message, refuse = verdict(Leftovers("local", "local_mode.data_dir=/data", agents), "warn")
    assert not refuse
    assert "local mode left 8 agents (s/a0, s/a1, s/a2, s/a3, s/a4 and 3 more) running in local_mode.data_dir=/data" in message
    assert "k8s_mode.enabled=false" in message and message.endswith("Starting anyway (server.other_mode_agents=warn).")


def test_other_mode_agents_must_be_refuse_or_warn():
    from agentproxy.settings import SettingsError
    with pytest.raises(SettingsError, match="server.other_mode_agents.*must be one of refuse, warn"):
        settings_with("server.other_mode_agents=ignore")


def _record(settings, agent_id, proc=None, status=None):
    record = {"spec": build_spec(settings, "s", agent_id).to_json(), "port": 9000, "created_at": "2026-01-01T00:00:00+00:00"}
    if proc is not None:
        record["process"] = {"pid": proc.pid, "create_time": proc.create_time(), "cmdline": proc.cmdline()}
    if status:
        record["status"] = status
    return record


def test_only_live_processes_of_the_state_file_count(tmp_path):
    settings = settings_with(f"local_mode.data_dir={tmp_path}")
    assert find_local(settings) is None  # no state file
    me = psutil.Process(os.getpid())  # a process that certainly runs, recorded as an agent's
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": me.pid, "create_time": me.create_time() - 100, "cmdline": me.cmdline()}
    records = {"live": _record(settings, "live", me), "gone": {**_record(settings, "gone"), "process": {
        "pid": dead.pid, "create_time": 1.0, "cmdline": ["x"]}}, "reused": {**_record(settings, "reused"),
        "process": stale}, "failed": _record(settings, "failed", me, status="failed"),
        "never": _record(settings, "never")}
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "agents": records}))
    found = find_local(settings)
    assert found == Leftovers("local", f"local_mode.data_dir={tmp_path}", ("s/live",))
    (tmp_path / "state.json").write_text("{not json")
    assert find_local(settings) is None and (tmp_path / "state.json").exists()  # left as it was


async def test_local_mode_without_any_cluster_credentials_looks_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert await modeswitch.find_k8s(settings_with()) is None
    await modeswitch.check(settings_with(f"local_mode.data_dir={tmp_path}"), "local")


async def test_a_cluster_that_refuses_connections_is_a_warning_at_once(tmp_path, monkeypatch, caplog):
    # A cluster that is down: its API server's loopback port is closed (nothing listens on a
    # port handed out here), so every connection is refused.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{free_port()}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: "t"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    await modeswitch.check(settings_with(f"local_mode.data_dir={tmp_path}"), "local")
    assert "could not look for k8s-mode agents in namespace agentapi-proxy" in caplog.text
    # Given up at the refusal, not after waiting out the look-up's time bound.
    assert "cannot be reached" in caplog.text and "no answer within" not in caplog.text
