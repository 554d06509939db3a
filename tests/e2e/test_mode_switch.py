"""Switching modes: ``agentproxy serve`` in one mode finds the agents the other mode
left running (live processes of local mode's state file; agentproxy's objects in
k8s mode's namespace), says which and what to do, and refuses to start, or
starts with a warning when ``server.other_mode_agents`` is ``warn``. Nothing is
deleted. Real servers, real agentapi processes, the real control plane.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import psutil
import yaml

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.process import Identity, find_process
from agentproxy.spec import build_spec
from testenv.ports import free_block, free_port

from .agents import SESSION, until_status
from .kube import wait_for


def agent_ports() -> dict[str, int]:
    """A block of free ports for a server's local agents."""
    start, end = free_block(20)
    return {"start": start, "end": end}


class Serve:
    """One ``agentproxy serve`` process with a settings file of the test."""

    def __init__(self, tmp_path: Path, kubeconfig: str, settings: dict) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / f"settings-{self.port}.yaml"
        self.config.write_text(yaml.safe_dump({**settings, "server": {**settings.get("server", {}), "port": self.port}}))
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentproxy", "serve", "--config", str(self.config), env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

    async def refused(self) -> str:
        """Start; it must exit with status 1. Its output."""
        await self.start()
        out, _ = await asyncio.wait_for(self.proc.communicate(), 60)
        assert self.proc.returncode == 1, out.decode()
        return out.decode()

    async def ready(self, http: aiohttp.ClientSession) -> None:
        await self.start()

        async def answers():
            assert self.proc.returncode is None, (await self.proc.stdout.read()).decode()
            try:
                async with http.get(f"{self.base}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False
        await wait_for(answers, "agentproxy serve to be ready", 60)

    async def stop(self) -> str:
        """SIGTERM (agents keep running); its output."""
        if self.proc is None:
            return ""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        return out.decode()


async def test_local_mode_finds_the_agents_k8s_mode_left(backend, namespace, kubeconfig, tmp_path):
    await backend.create(build_spec(backend.settings, SESSION, "left"))
    await until_status(backend, "left", AgentStatus.READY)
    settings = {"k8s_mode": {"namespace": namespace},
                "local_mode": {"data_dir": str(tmp_path / "data"), "ports": agent_ports()}}

    out = await Serve(tmp_path, kubeconfig, settings).refused()
    assert f"agentproxy: error: k8s mode has 1 agent ({SESSION}/left) in namespace {namespace} of https://" in out
    assert "k8s_mode.enabled=true" in out and "set server.other_mode_agents=warn" in out
    assert "Nothing was deleted." in out and "Traceback" not in out
    assert (await backend.get(SESSION, "left")).status is AgentStatus.READY

    server = Serve(tmp_path, kubeconfig, {**settings, "server": {"other_mode_agents": "warn"}})
    async with aiohttp.ClientSession() as http:
        try:
            await server.ready(http)
        finally:
            out = await server.stop()
    assert f"WARNING agentproxy.backends.modeswitch: k8s mode has 1 agent ({SESSION}/left)" in out
    assert "Starting anyway (server.other_mode_agents=warn)" in out
    assert (await backend.get(SESSION, "left")).status is AgentStatus.READY


def _agent_process(data_dir: Path, agent_id: str) -> psutil.Process:
    record = json.loads((data_dir / "state.json").read_text())["agents"][agent_id]["process"]
    proc = find_process(Identity.from_dict(record))
    assert proc is not None, f"agent {agent_id}'s recorded process does not run"
    return proc


async def test_k8s_mode_finds_the_agents_local_mode_left(namespace, kubeconfig, tmp_path):
    data_dir = tmp_path / "data"
    local = {"local_mode": {"data_dir": str(data_dir), "ports": agent_ports()}}
    k8s = {**local, "k8s_mode": {"enabled": True, "namespace": namespace, "pod_address": "pod_ip"}}
    async with aiohttp.ClientSession() as http:
        server = Serve(tmp_path, kubeconfig, local)
        await server.ready(http)
        try:
            async with http.post(f"{server.base}/sessions/s/agents", json={"id": "stay"}) as resp:
                assert resp.status == 201, await resp.text()

            async def ready():
                async with http.get(f"{server.base}/sessions/s/agents/stay") as resp:
                    return (await resp.json())["status"] == "ready"
            await wait_for(ready, "the local agent to be ready", 60)
        finally:
            await server.stop()
        agent = _agent_process(data_dir, "stay")  # left running by the stopped proxy
        try:
            out = await Serve(tmp_path, kubeconfig, k8s).refused()
            assert f"agentproxy: error: local mode left 1 agent (s/stay) running in local_mode.data_dir={data_dir}" in out
            assert "k8s_mode.enabled=false" in out and "Nothing was deleted." in out and "Traceback" not in out
            assert agent.is_running()

            warned = Serve(tmp_path, kubeconfig, {**k8s, "server": {"other_mode_agents": "warn"}})
            try:
                await warned.ready(http)
            finally:
                out = await warned.stop()
            assert "WARNING agentproxy.backends.modeswitch: local mode left 1 agent (s/stay)" in out
            assert "listening on" in out and agent.is_running()
        finally:
            # Back to local mode, which takes its agent over again, to delete it.
            again = Serve(tmp_path, kubeconfig, local)
            await again.ready(http)
            try:
                async with http.delete(f"{again.base}/sessions/s/agents/stay?purge=true") as resp:
                    assert resp.status in (200, 202), await resp.text()
                await asyncio.get_running_loop().run_in_executor(None, agent.wait, 30)
            finally:
                await again.stop()
