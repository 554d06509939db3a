"""`agentproxy apply | diff | status | delete` against a real API server, as an operator runs them:
a real process, its output and its exit status."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from .kube import get


async def agentproxy(kubeconfig: str, namespace: str, *args: str) -> tuple[int, str, str]:
    """Run the command line; (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    env["KUBECONFIG"] = kubeconfig
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentproxy", *args, "--set", f"k8s_mode.namespace={namespace}", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None  # communicate() waited for the exit
    return proc.returncode, out.decode(), err.decode()


AGENT = ("--session", "ops", "--agent", "cli1")


async def test_dry_run_applies_nothing(kubeconfig, api, namespace):
    code, out, err = await agentproxy(kubeconfig, namespace, "apply", *AGENT, "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [
        "configmap/agent-cli1-config serverside-applied (server dry run)",
        "service/agent-cli1-headless serverside-applied (server dry run)",
        "persistentvolumeclaim/data-agent-cli1-0 serverside-applied (server dry run)",
        "statefulset/agent-cli1 serverside-applied (server dry run)",
    ]
    assert await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-cli1") is None
    assert await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-cli1-config") is None


async def test_diff_apply_status_and_delete(kubeconfig, api, namespace):
    code, out, err = await agentproxy(kubeconfig, namespace, "diff", *AGENT)
    assert code == 1, err  # nothing exists yet: everything would change
    assert "+++ merged/StatefulSet/agent-cli1" in out and "+++ merged/ConfigMap/agent-cli1-config" in out

    code, out, err = await agentproxy(kubeconfig, namespace, "apply", *AGENT, "--wait", "--timeout", "90")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["configmap/agent-cli1-config serverside-applied", "service/agent-cli1-headless serverside-applied",
                         "pvc/data-agent-cli1-0 serverside-applied", "statefulset/agent-cli1 serverside-applied"]
    assert lines[4] == "cli1: applied" and lines[-1] == "cli1: ready"

    code, out, err = await agentproxy(kubeconfig, namespace, "diff", *AGENT)
    assert (code, out) == (0, ""), err  # applied as rendered: no change

    code, out, err = await agentproxy(kubeconfig, namespace, "diff", *AGENT, "--env", "EXTRA=1")
    assert code == 1, err
    assert "--- live/ConfigMap/agent-cli1-config" in out and "+  EXTRA: '1'" in out
    assert "ownerReferences" not in "".join(line for line in out.splitlines() if line.startswith(("+", "-")) and
                                            not line.startswith(("+++", "---")))  # owned, as applied

    code, out, err = await agentproxy(kubeconfig, namespace, "status", *AGENT, "-o", "json")
    assert code == 0, err
    status = json.loads(out)
    assert (status["id"], status["session"], status["status"]) == ("cli1", "ops", "ready")
    assert status["details"]["statefulset"] == "agent-cli1"

    code, out, err = await agentproxy(kubeconfig, namespace, "delete", *AGENT, "--wait", "--timeout", "90")
    assert code == 0, err
    assert out.splitlines() == ["agent cli1 deleted (data is kept)", "agent cli1 gone"]
    assert await get(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-cli1-0") is not None

    code, out, err = await agentproxy(kubeconfig, namespace, "status", *AGENT)
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
