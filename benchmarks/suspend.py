"""Measure suspend and resume: resume-to-ready p50/p95 and, in k8s mode, API requests per
suspend, per resume and per recorded activity.

- local mode: ``--agents`` echo agents (the real agentapi) are created and made ready, then
  all are suspended, then each is resumed in turn; resume-to-ready is what the backend
  reports (from the resume call until the agent answers ``GET /status`` again on its new port).
- k8s mode (``--k8s``, against the cluster $KUBECONFIG points to, in a fresh namespace
  deleted afterwards): the same with StatefulSets; resume-to-ready runs from the apply of
  1 replica until the watch shows the pod Ready (on kwok: the controllers' and kwok's pace;
  nothing runs in the pod). API requests are the backend client's own count.

Usage: ``python -m benchmarks.suspend [--agents 20]`` and
``KUBECONFIG=... python -m benchmarks.suspend --k8s [--agents 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from agentproxy.backends.base import AgentStatus, Backend
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import build_spec
from testenv.ports import free_block

TIMEOUT = 300.0
SETTLE = 3.0
"""Seconds left for the controllers to finish with an agent before the next phase."""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _until(backend: Backend, agent_id: str, check, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check(await backend.get("bench", agent_id)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"agent {agent_id} never got {what}")
        await asyncio.sleep(0.02)


async def _cycle(backend: Backend, settings: Settings, count: int, calls=lambda: 0) -> dict[str, object]:
    """Create ``count`` agents, then suspend and resume each one in turn."""
    ready_after: list[float] = []
    backend.lifecycle_listeners.append(
        lambda e: ready_after.append(e.seconds) if e.kind == "ready" and e.seconds is not None else None)
    ids = [f"bench-{i}" for i in range(count)]
    for agent_id in ids:
        await backend.create(build_spec(settings, "bench", agent_id))
    for agent_id in ids:
        await _until(backend, agent_id, lambda s: s.status is AgentStatus.READY, "ready")
    await asyncio.sleep(SETTLE)
    per_suspend, per_resume = [], []
    for agent_id in ids:
        before = calls()
        await backend.suspend("bench", agent_id)
        per_suspend.append(calls() - before)
    for agent_id in ids:
        await _until(backend, agent_id, lambda s: s.status is AgentStatus.SUSPENDED, "suspended")
    await asyncio.sleep(SETTLE)  # as an agent suspended a while ago: its StatefulSet is settled
    for agent_id in ids:
        before = calls()
        await backend.resume("bench", agent_id)
        per_resume.append(calls() - before)
        await _until(backend, agent_id, lambda s: s.status is AgentStatus.READY, "ready again")
    before = calls()
    for agent_id in ids:
        await backend.record_activity(agent_id, datetime.now(UTC))
    per_activity = (calls() - before) / count
    for agent_id in ids:
        await backend.delete("bench", agent_id, purge=True)
    return {"resume_to_ready": ready_after, "per_suspend": per_suspend, "per_resume": per_resume,
            "per_activity": per_activity}


def _report(mode: str, result: dict[str, Any], with_calls: bool) -> None:
    times: list[float] = result["resume_to_ready"]
    print(f"{mode}: {len(times)} resumes; resume-to-ready p50 {statistics.median(times):.3f} s, "
          f"p95 {_pct(times, 0.95):.3f} s, max {max(times):.3f} s")
    if with_calls:
        print(f"{mode}: API requests per suspend {statistics.mean(result['per_suspend']):.2f} "
              f"(max {max(result['per_suspend'])}), per resume {statistics.mean(result['per_resume']):.2f} "
              f"(max {max(result['per_resume'])}), per recorded activity {result['per_activity']:.2f}")


async def local(count: int) -> None:
    from agentproxy.agentapi import locate
    from agentproxy.backends.local.backend import LocalBackend

    launcher = locate()
    if launcher is None:
        sys.exit("agentapi is not installed: run `bin/just agentapi`")
    with tempfile.TemporaryDirectory() as data:
        settings = Settings()
        settings.local_mode.agentapi_binary = launcher
        settings.local_mode.data_dir = data
        settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(500, mostly=True)
        backend = LocalBackend(settings)
        await backend.start()
        try:
            _report("local", await _cycle(backend, settings, count), with_calls=False)
        finally:
            await backend.close()


async def k8s(count: int) -> None:
    import kr8s.asyncio

    from agentproxy.backends.k8s.backend import K8sBackend
    from agentproxy.backends.k8s.client import Client

    client = Client(await kr8s.asyncio.api())
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    await client.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": namespace}})
    try:
        while True:
            try:
                await client.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
                break
            except Exception:
                await asyncio.sleep(0.2)
        settings = load_settings(overrides=[f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip"],
                                 environ={}).settings
        backend = K8sBackend(settings, client=client)
        await backend.start()
        try:
            _report("k8s", await _cycle(backend, settings, count, calls=lambda: client.calls), with_calls=True)
        finally:
            await backend.close()
    finally:
        await client.request("DELETE", f"/api/v1/namespaces/{namespace}")
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20, help="agents suspended and resumed (default: 20)")
    parser.add_argument("--k8s", action="store_true", help="the k8s backend against $KUBECONFIG")
    args = parser.parse_args()
    if args.k8s:
        from .cluster_check import require_cluster

        require_cluster("bench-suspend --k8s")
    asyncio.run(k8s(args.agents) if args.k8s else local(args.agents))


if __name__ == "__main__":
    main()
