"""`cluster-down` leaves nothing of the real node on the host, also after a run
that was interrupted: the node's daemons killed, its pods' shims and
containers left running, their mounts, network namespaces, veths and cgroups
in place. The host is compared with what it was before `cluster-up`.

Needs the host to itself (no other real node up); the test recipe runs it after
the e2e suite's cluster is down. It is no e2e test (marker ``host_to_itself``): it
starts its own cluster, and ``bin/just e2e`` leaves it out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from testenv import apiclient, host, procs
from testenv.layout import PORTS, Layout, cache_dir
from testenv.ports import free_block

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.real_node, pytest.mark.host_to_itself]
NAMESPACE = "cleanup"


@pytest.fixture
def cluster_dir():
    # A short path: containerd's socket must fit a unix socket address.
    parent = Path(tempfile.mkdtemp(prefix="apx-"))
    yield parent / "cluster"
    shutil.rmtree(parent, ignore_errors=True)


def _cluster(action: str, env: dict) -> None:
    result = subprocess.run([sys.executable, "-m", "testenv.cluster", action], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"cluster.py {action} failed:\n{result.stderr[-3000:]}"


def test_down_after_an_interrupted_run_leaves_the_host_as_it_was(cluster_dir):
    record = host.read_record()
    assert record is None, f"the real node of {record and record['owner']} is up; this proof needs the host to itself"
    # The cluster's ports from the tests' span, below the kernel's ephemeral ports (32768 and up),
    # which any outgoing connection on the machine may hold at the moment the cluster starts.
    port_base, _ = free_block(PORTS)
    layout = Layout(cache_dir(), cluster_dir, port_base)
    env = {**os.environ, "AGENTPROXY_CLUSTER_DIR": str(cluster_dir), "AGENTPROXY_CLUSTER_PORT_BASE": str(port_base),
           "AGENTPROXY_REAL_NODE": "1", "KUBECONFIG": str(layout.kubeconfig)}
    before = host.snapshot(str(layout.node))

    _cluster("up", env)
    try:
        # An agent with a volume: a sandbox (network namespace, veth), containers
        # (cgroups, overlay mounts) and a bind-mounted local volume.
        apiclient.create(layout, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": NAMESPACE, "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": "agentproxy.io/real-node=true",
                "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
                    [{"key": "agentproxy.io/real-node", "operator": "Exists", "effect": "NoSchedule"}])}}})
        deadline = time.monotonic() + 60
        while apiclient.api(layout, "GET", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")[0] != 200:
            assert time.monotonic() < deadline, "the namespace's default ServiceAccount never appeared"
            time.sleep(0.25)
        settings = [f"k8s_mode.namespace={NAMESPACE}", "k8s_mode.image_pull_policy=Never",
                    "k8s_mode.storage_class=local-path", "k8s_mode.resources.cpu_request=50m"]
        applied = subprocess.run([sys.executable, "-m", "agentproxy", "apply", "--session", "s", "--agent", "a1",
                                  "--wait", *(a for s in settings for a in ("--set", s))],
                                 env=env, capture_output=True, text=True, timeout=180)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        during = host.snapshot(str(layout.node))
        assert during["processes"] and during["cgroups"] and during["record"]
        assert any("veth" in link for link in during["links"]), during["links"]
        assert any("/volumes/" in m for m in during["mounts"]) and any("/netns/" in m for m in during["mounts"])

        # kube-proxy's rules are there: cluster-down must take them away.
        assert any("KUBE-SERVICES" in rule for rule in during["iptables"]["iptables"]["nat"])

        # Interrupted: the node's daemons die without cleaning anything up.
        for name in ("kubelet", "kube-proxy", "apiserver-relay", "local-path-provisioner", "containerd"):
            proc = procs.owned_process(cluster_dir, name)
            assert proc is not None, name
            proc.send_signal(signal.SIGKILL)
            procs.exited(proc, 10)
        assert host.snapshot(str(layout.node))["processes"], "the pods' shims and containers should outlive containerd"
    finally:
        _cluster("down", env)

    assert host.snapshot(str(layout.node)) == before
    assert not cluster_dir.exists()
