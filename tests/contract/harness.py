"""One started backend of each kind for the contract tests, with what a test needs to watch it:
its settings, when an agent is ready or gone, and whether an agent's data is kept.

- ``memory``: the in-memory backend of the HTTP layer's tests (nothing runs);
- ``local``: agentapi processes (the real binary) running the echo demo agent;
- ``k8s``: the k8s backend in a fresh namespace of the test cluster (kwok runs the pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from agentproxy import naming
from agentproxy.backends.base import AgentState, AgentStatus, Backend, NotFound
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import AgentSpec, build_spec

TIMEOUT = 90.0
"""Seconds an agent may take to become ready or to be gone (pods of the test cluster included)."""


class Harness:
    """A started backend and the means to observe it."""

    def __init__(self, kind: str, backend: Backend, settings: Settings,
                 data_kept: Callable[[str], Awaitable[bool]]) -> None:
        self.kind = kind
        self.backend = backend
        self.settings = settings
        self._data_kept = data_kept

    def spec(self, agent_id: str, session: str = "s1", **kwargs: Any) -> AgentSpec:
        """The spec of an echo agent."""
        return build_spec(self.settings, session, agent_id, **kwargs)

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
        """Poll ``check`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while not (result := await check()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind}: timed out waiting for {what}")
            await asyncio.sleep(0.1)
        return result

    async def ready(self, agent_id: str, session: str = "s1") -> AgentState:
        """The agent once it is ready."""
        async def check() -> AgentState | None:
            state = await self.backend.get(session, agent_id)
            return state if state.status is AgentStatus.READY else None
        return await self.until(f"agent {agent_id} to be ready", check)

    async def gone(self, agent_id: str, session: str = "s1") -> None:
        """Wait until the agent no longer exists (a delete may take a moment to finish)."""
        async def check() -> bool:
            try:
                await self.backend.get(session, agent_id)
            except NotFound:
                return True
            return False
        await self.until(f"agent {agent_id} to be gone", check)

    async def data_kept(self, agent_id: str) -> bool:
        """Whether the agent's data (work directory, volume) exists."""
        return await self._data_kept(agent_id)


@contextlib.asynccontextmanager
async def memory_harness() -> AsyncIterator[Harness]:
    from tests.unit.api.memory_backend import MemoryBackend

    # Agents are ready at once when an upstream is set; the contract never contacts it.
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    await backend.start()

    async def data_kept(agent_id: str) -> bool:
        return agent_id in backend.data
    try:
        yield Harness("memory", backend, load_settings(environ={}).settings, data_kept)
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def local_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    from agentproxy.agentapi import locate
    from agentproxy.backends.local.backend import LocalBackend
    from tests.unit.local.conftest import assert_nothing_left, make_settings, port_block, shut_down

    launcher = locate()
    assert launcher, "agentapi is not installed: run `bin/just agentapi` (or `agentproxy install-agentapi`)"
    settings = make_settings(tmp_path / "data", launcher, port_block())
    backend = LocalBackend(settings)
    await backend.start()

    async def data_kept(agent_id: str) -> bool:
        return (tmp_path / "data" / "work" / agent_id).exists()
    try:
        yield Harness("local", backend, settings, data_kept)
    finally:
        await shut_down(backend)
    await assert_nothing_left(tmp_path)


@contextlib.asynccontextmanager
async def k8s_harness() -> AsyncIterator[Harness]:
    import kr8s.asyncio

    from agentproxy.backends.k8s.backend import K8sBackend
    from agentproxy.backends.k8s.client import Client
    from tests.e2e.kube import fresh_namespace, get, required_kubeconfig

    api = await kr8s.asyncio.api(kubeconfig=required_kubeconfig())
    async with fresh_namespace(api) as namespace:
        settings = load_settings(overrides=[f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip"],
                                 environ={}).settings
        backend = K8sBackend(settings, client=Client(api))
        await backend.start()

        async def data_kept(agent_id: str) -> bool:
            pvc = await get(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{naming.pvc_name(agent_id)}")
            return pvc is not None and not pvc["metadata"].get("deletionTimestamp")
        try:
            yield Harness("k8s", backend, settings, data_kept)
        finally:
            await backend.close()


def harness(kind: str, tmp_path: Path) -> contextlib.AbstractAsyncContextManager[Harness]:
    """The harness of a backend kind: ``memory``, ``local`` or ``k8s``."""
    if kind == "memory":
        return memory_harness()
    if kind == "local":
        return local_harness(tmp_path)
    return k8s_harness()
