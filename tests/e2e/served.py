"""`agentproxy serve` processes in k8s mode for the e2e suite, and their HTTP API.

Each process logs to a file of the test's temporary directory (a pipe nobody reads
would fill up and stall the server), listens on a free loopback port, and is
stopped by the fixture that started it, also when the test fails. A test may stop
one and start it again on the same port (a restarted replica), or run several
against one namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from testenv.ports import free_port

from .kube import wait_for


class Served:
    """One `agentproxy serve` (started, stopped and started again with the same
    command line) and a client of its API."""

    def __init__(self, argv: list[str], env: dict[str, str], base: str, log: Path, http: aiohttp.ClientSession) -> None:
        self.argv, self.env, self.base, self.log, self.http = argv, env, base, log, http
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, ready: bool = True) -> Served:
        """Start the process; wait for ``/readyz`` 200 unless told not to."""
        with open(self.log, "ab") as out:
            self.proc = proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL)
        if ready:
            async def answers() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"agentproxy serve exited with {proc.returncode}:\n{self.output()}")
                return await self.readyz() == 200
            await wait_for(answers, "agentproxy serve to be ready", timeout=60)
        return self

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any, dict]:
        """(status, JSON body or text, headers) of one request."""
        kwargs: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            return resp.status, data, dict(resp.headers)

    async def readyz(self) -> int:
        """The status of ``/readyz`` (0 when the server does not answer within 10 s)."""
        try:
            status, _, _ = await self.call("GET", "/readyz", timeout=10)
            return status
        except (TimeoutError, aiohttp.ClientError):
            return 0

    async def agent(self, session: str, agent_id: str) -> dict | None:
        status, body, _ = await self.call("GET", f"/sessions/{session}/agents/{agent_id}")
        return body if status == 200 else None

    async def events(self, session: str | None = None) -> AsyncIterator[dict]:
        """The ``status`` events of ``/events`` as they come."""
        query = f"?session={session}" if session else ""
        async with self.http.get(f"{self.base}/events{query}", timeout=aiohttp.ClientTimeout(total=None)) as resp:
            assert resp.status == 200
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    yield json.loads(line[6:])

    async def metrics(self) -> dict[tuple[str, tuple], float]:
        """The samples of ``/metrics`` by (name, sorted labels); see :func:`counted`."""
        async with self.http.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self) -> None:
        """SIGTERM, as a rolling update stops a replica (its agents keep running); SIGKILL
        after 20 s."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Servers:
    """Starts `agentproxy serve` processes; :meth:`close` stops every one."""

    def __init__(self, kubeconfig: str, namespace: str, directory: Path) -> None:
        self.kubeconfig, self.namespace, self.directory = kubeconfig, namespace, directory
        self.started: list[Served] = []
        self.http = aiohttp.ClientSession()

    async def start(self, *settings: str, ready: bool = True, port: int | None = None) -> Served:
        """A server for the namespace with ``--set`` ``settings`` (on ``port``, else a free one);
        waits for ``/readyz`` 200 unless told not to."""
        port = port or free_port()
        args = ["k8s_mode.enabled=true", f"k8s_mode.namespace={self.namespace}", "k8s_mode.pod_address=pod_ip",
                f"server.port={port}", *settings]
        served = Served([sys.executable, "-m", "agentproxy", "serve", *(a for s in args for a in ("--set", s))],
                        {**os.environ, "KUBECONFIG": self.kubeconfig}, f"http://127.0.0.1:{port}",
                        self.directory / f"serve-{port}.log", self.http)
        self.started.append(served)
        return await served.start(ready)

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.started))
        await self.http.close()


def counted(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """One sample's value of :meth:`Served.metrics` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
