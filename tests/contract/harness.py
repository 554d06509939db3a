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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from agentproxy import naming
from agentproxy.backends.base import AgentState, AgentStatus, Backend, NotFound
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import AgentSpec, build_spec

TIMEOUT = 90.0
"""Seconds an agent may take to become ready or to be gone (pods of the test cluster included)."""


async def negated(check: Awaitable[bool]) -> bool:
    """``not`` of an awaited check, for :meth:`Harness.until` (``data_kept``, ``running``)."""
    return not await check


class Harness:
    """A started backend and the means to observe it."""

    def __init__(self, kind: str, backend: Backend, settings: Settings,
                 data_kept: Callable[[str], Awaitable[bool]], running: Callable[[str], Awaitable[bool]],
                 make: Callable[[], Backend]) -> None:
        self.kind = kind
        self.backend = backend
        self.settings = settings
        self._data_kept = data_kept
        self._running = running
        self._make = make

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

    async def running(self, agent_id: str) -> bool:
        """Whether anything of the agent runs (a process, a pod)."""
        return await self._running(agent_id)

    async def status(self, agent_id: str, status: AgentStatus, session: str = "s1") -> AgentState:
        """The agent once it has ``status``."""
        async def check() -> AgentState | None:
            state = await self.backend.get(session, agent_id)
            return state if state.status is status else None
        return await self.until(f"agent {agent_id} to be {status.value}", check)

    async def restart(self) -> None:
        """Close the backend (agents keep running) and start a new one on the same store, as a
        restarted proxy does."""
        await self.backend.close()
        self.backend = self._make()
        await self.backend.start()


@contextlib.asynccontextmanager
async def memory_harness() -> AsyncIterator[Harness]:
    from tests.unit.api.memory_backend import MemoryBackend

    # Agents are ready at once when an upstream is set; the contract never contacts it.
    first = MemoryBackend(upstream="http://127.0.0.1:9")
    await first.start()

    def make() -> MemoryBackend:
        """A new backend on the same store (the dict of agents), as a restarted proxy finds it."""
        again = MemoryBackend(upstream=first.upstream)
        again.agents, again.data, again.log_lines = first.agents, first.data, first.log_lines
        return again

    async def data_kept(agent_id: str) -> bool:
        return agent_id in first.data

    async def running(agent_id: str) -> bool:
        state = first.agents.get(agent_id)
        return state is not None and state.status is AgentStatus.READY
    subject = Harness("memory", first, load_settings(environ={}).settings, data_kept, running, make)
    try:
        yield subject
    finally:
        await subject.backend.close()


@contextlib.asynccontextmanager
async def local_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    from agentproxy.agentapi import locate
    from agentproxy.backends.local.backend import LocalBackend
    from tests.unit.local.conftest import assert_nothing_left, make_settings, port_block, processes_in, shut_down

    launcher = locate()
    assert launcher, "agentapi is not installed: run `bin/just agentapi` (or `agentproxy install-agentapi`)"
    settings = make_settings(tmp_path / "data", launcher, port_block())
    backend = LocalBackend(settings)
    await backend.start()

    async def data_kept(agent_id: str) -> bool:
        return (tmp_path / "data" / "work" / agent_id).exists()

    async def running(agent_id: str) -> bool:
        return bool(processes_in(tmp_path / "data" / "work" / agent_id))
    subject = Harness("local", backend, settings, data_kept, running, lambda: LocalBackend(settings))
    try:
        yield subject
    finally:
        assert isinstance(subject.backend, LocalBackend)
        await shut_down(subject.backend)
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

        async def running(agent_id: str) -> bool:
            return await get(api, f"/api/v1/namespaces/{namespace}/pods/{naming.pod_name(agent_id)}") is not None
        subject = Harness("k8s", backend, settings, data_kept, running, lambda: K8sBackend(settings, client=Client(api)))
        try:
            yield subject
        finally:
            await subject.backend.close()


def harness(kind: str, tmp_path: Path) -> contextlib.AbstractAsyncContextManager[Harness]:
    """The harness of a backend kind: ``memory``, ``local`` or ``k8s``."""
    if kind == "memory":
        return memory_harness()
    if kind == "local":
        return local_harness(tmp_path)
    return k8s_harness()
