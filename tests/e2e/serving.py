"""`agentproxy serve` in k8s mode as a process of its own, for tests that restart it or run
several replicas of it against one namespace."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agentproxy.backends.local.ports import port_is_free
from kube import wait_for

PORT_RANGE = (27000, 27999)
"""Where these servers listen."""


def free_port(taken: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A free port of PORT_RANGE (not one of ``taken``)."""
    for port in range(*PORT_RANGE):
        if port not in taken and port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


class Serve:
    """One replica of the proxy for ``namespace``, with ``settings`` as ``AGENTAPI_*`` variables."""

    def __init__(self, kubeconfig: str, namespace: str, log: Path, port: int, **settings: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
        self.env.update({"KUBECONFIG": kubeconfig, "AGENTAPI_K8S_MODE_ENABLED": "true",
                         "AGENTAPI_K8S_MODE_NAMESPACE": namespace, "AGENTAPI_K8S_MODE_POD_ADDRESS": "pod_ip",
                         "AGENTAPI_SERVER_PORT": str(port), **settings})
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> "Serve":
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentproxy", "serve", env=self.env,
                                                             stdout=log, stderr=asyncio.subprocess.STDOUT)

        async def ready() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"agentproxy serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                async with http.get(f"{self.base}/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False
        await wait_for(ready, "agentproxy serve to be ready", timeout=60)
        return self

    async def stop(self) -> None:
        """SIGTERM, as a rolling update stops a replica (its agents keep running)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def metrics(self, http: aiohttp.ClientSession) -> dict[tuple[str, tuple], float]:
        """The samples of ``/metrics`` by (name, sorted labels)."""
        async with http.get(f"{self.base}/metrics") as response:
            text = await response.text()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def agent(self, http: aiohttp.ClientSession, session: str, agent_id: str) -> dict[str, Any] | None:
        async with http.get(f"{self.base}/sessions/{session}/agents/{agent_id}") as response:
            return await response.json() if response.status == 200 else None


def counted(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
