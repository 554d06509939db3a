"""Restricted Pod Security on the real node: the agent's pod is admitted and its
processes run as the configured non-root uid, with no capabilities, no new
privileges and the runtime's seccomp filter (read from the host's /proc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..kube import get
from .rn import container_processes, pod_of

pytestmark = pytest.mark.real_node
UID = 1000  # k8s_mode.run_as_user's default


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


async def test_restricted_pod_runs_as_the_non_root_uid_without_capabilities(serve, api, rn_namespace):
    ns = await get(api, f"/api/v1/namespaces/{rn_namespace}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    server = await serve()
    await server.create("s", {"id": "sec"})
    await server.until("s", "sec", "ready")

    pod = await pod_of(api, rn_namespace, "sec")
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    pids = container_processes(container_id)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in pids}
    # agentapi and the echo agent it runs in its terminal.
    assert "agentapi" in commands.values() and "python3" in commands.values(), commands
    for pid in pids:
        status = _status(pid)
        assert status["Uid"].split() == [str(UID)] * 4, (commands[pid], status["Uid"])
        assert status["Gid"].split() == [str(UID)] * 4, (commands[pid], status["Gid"])
        assert str(UID) in status["Groups"].split()  # fsGroup
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[caps], 16) == 0, (commands[pid], caps, status[caps])
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"  # a filter is active (RuntimeDefault)
