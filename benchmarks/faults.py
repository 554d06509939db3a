"""How fast agentproxy in k8s mode notices and recovers from API server faults, and how fast
it repairs drift, against the local control plane ``testenv/cluster.py`` started.

Two `agentproxy serve` replicas share a fresh namespace with N agents. Then:

- freeze the API server (SIGSTOP) for ``--freeze`` seconds, ``--tries`` times: seconds
  from the freeze until both replicas answer ``/readyz`` 503, and from SIGCONT until both
  answer 200 again;
- kill and restart it (``testenv/cluster.py restart kube-apiserver``): seconds from the
  new server being healthy until both replicas are ready;
- edit each kind of object out of band, ``--tries`` times: seconds until it is repaired.

Only the API server of the cluster ``$KUBECONFIG`` belongs to is touched (its pid file, in
that cluster's directory). Usage:
``KUBECONFIG=.../kubeconfig python -m benchmarks.faults [--agents 200] [--tries 5] [--freeze 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import kr8s.asyncio
import psutil
import yaml

from testenv import procs
from testenv.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.05


def _cluster_dir() -> Path:
    """The directory of the cluster $KUBECONFIG belongs to (cluster.py writes the kubeconfig there)."""
    return Path(os.environ["KUBECONFIG"]).resolve().parent


def _cluster_env() -> dict[str, str]:
    """Makes testenv/cluster.py act on the cluster $KUBECONFIG belongs to: its directory and its
    port base (the API server listens on base + 2, as testenv/layout.py lays the ports out)."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    port = urlparse(config["clusters"][0]["cluster"]["server"]).port
    return {**os.environ, "AGENTPROXY_CLUSTER_DIR": str(_cluster_dir()), "AGENTPROXY_CLUSTER_PORT_BASE": str(port - 2)}


def _apiserver() -> psutil.Process:
    proc = procs.owned_process(_cluster_dir(), "kube-apiserver")
    if proc is None:
        raise SystemExit("the API server's pid file is gone or names another process")
    return proc


async def _call(api: kr8s.asyncio.Api, method: str, path: str, body=None, content_type="application/json",
                params=None) -> dict:
    base, _, rest = path.lstrip("/").partition("/")
    kwargs: dict[str, Any] = {"params": params or {}, "headers": {"Content-Type": content_type}}
    if body is not None:
        kwargs["content"] = json.dumps(body)
    async with api.call_api(method, version="", base=f"/{base}", url=rest, **kwargs) as resp:
        return resp.json() if resp.content else {}


async def _until(check, timeout: float = 120.0) -> float:
    """Seconds until ``check()`` is true (polled every POLL seconds)."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(POLL)
    return time.monotonic() - started


class Replicas:
    def __init__(self, namespace: str, directory: Path) -> None:
        self.namespace, self.directory = namespace, directory
        self.procs: list[asyncio.subprocess.Process] = []
        self.bases: list[str] = []
        self.http = aiohttp.ClientSession()

    async def start(self, count: int = 2) -> None:
        for _ in range(count):
            port = free_port()
            with open(self.directory / f"serve-{port}.log", "ab") as log:
                self.procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agentproxy", "serve", "--set", "k8s_mode.enabled=true",
                    "--set", f"k8s_mode.namespace={self.namespace}", "--set", "k8s_mode.pod_address=pod_ip",
                    "--set", f"server.port={port}", stdout=log, stderr=asyncio.subprocess.STDOUT))
            self.bases.append(f"http://127.0.0.1:{port}")
        await _until(lambda: self.all_ready(200), 60)

    async def readyz(self, base: str) -> int:
        try:
            async with self.http.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status
        except (TimeoutError, aiohttp.ClientError):
            return 0

    async def all_ready(self, status: int) -> bool:
        return all(s == status for s in await asyncio.gather(*(self.readyz(b) for b in self.bases)))

    async def create(self, count: int) -> None:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with gate:
                async with self.http.post(f"{self.bases[i % 2]}/sessions/bench/agents", json={"id": f"a{i}"}) as r:
                    assert r.status == 201, await r.text()
        await asyncio.gather(*(one(i) for i in range(count)))

        async def all_listed_ready() -> bool:
            async with self.http.get(f"{self.bases[0]}/agents?status=ready") as resp:
                return len((await resp.json())["agents"]) == count
        await _until(all_listed_ready, 600)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        await self.http.close()


def _p50(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--freeze", type=float, default=30.0)
    args = parser.parse_args()
    api = await kr8s.asyncio.api()
    namespace = f"bench-faults-{uuid.uuid4().hex[:6]}"
    await _call(api, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": namespace}})
    await asyncio.sleep(2)  # its default ServiceAccount
    faults = 0
    with tempfile.TemporaryDirectory() as tmp:
        replicas = Replicas(namespace, Path(tmp))
        try:
            await replicas.start()
            started = time.monotonic()
            await replicas.create(args.agents)
            print(f"{args.agents} agents ready through two replicas in {time.monotonic() - started:.1f} s")

            unready, ready = [], []
            for _ in range(args.tries):
                proc = _apiserver()
                proc.send_signal(signal.SIGSTOP)
                frozen = time.monotonic()
                try:
                    unready.append(await _until(lambda: replicas.all_ready(503), args.freeze))
                    await asyncio.sleep(max(0.0, args.freeze - (time.monotonic() - frozen)))
                finally:
                    proc.send_signal(signal.SIGCONT)
                faults += 1
                ready.append(await _until(lambda: replicas.all_ready(200)))
                await asyncio.sleep(3)
            print(f"freeze {args.freeze:g} s: /readyz 503 on both after the freeze: {_p50(unready)}")
            print(f"freeze {args.freeze:g} s: /readyz 200 on both after SIGCONT: {_p50(ready)}")

            restarted, total = [], []
            for _ in range(args.tries):
                killed = time.monotonic()
                restart = await asyncio.create_subprocess_exec(sys.executable, "-m", "testenv.cluster",
                                                            "restart", "kube-apiserver", cwd=ROOT,
                                                            stderr=asyncio.subprocess.DEVNULL, env=_cluster_env())
                if await restart.wait() != 0:  # returns once the new API server is healthy
                    raise SystemExit("testenv/cluster.py restart kube-apiserver failed")
                healthy = time.monotonic()
                faults += 1
                restarted.append(await _until(lambda: replicas.all_ready(200)))
                total.append(time.monotonic() - killed)
                print(f"  restart: API server healthy {healthy - killed:.1f} s after the kill", flush=True)
                await asyncio.sleep(3)
            print(f"kill and restart: /readyz 200 on both after the new API server is healthy: {_p50(restarted)}")
            print(f"kill and restart: /readyz 200 on both after the kill: {_p50(total)}")

            repairs: dict[str, list[float]] = {"StatefulSet": [], "Service": [], "ConfigMap": [],
                                                "PersistentVolumeClaim": []}
            ns = f"/api/v1/namespaces/{namespace}"
            for i in range(args.tries):
                agent = f"a{i}"
                edits = {
                    "StatefulSet": (f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{agent}",
                                    [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                                      "value": "other:1"}],
                                    lambda o: o["spec"]["template"]["spec"]["containers"][0]["image"] != "other:1"),
                    "Service": (f"{ns}/services/agent-{agent}-headless",
                                [{"op": "replace", "path": "/spec/publishNotReadyAddresses", "value": False}],
                                lambda o: o["spec"].get("publishNotReadyAddresses") is True),
                    "ConfigMap": (f"{ns}/configmaps/agent-{agent}-config",
                                  [{"op": "replace", "path": "/data/AGENTPROXY_AGENT_ID", "value": "x"}],
                                  lambda o: o["data"]["AGENTPROXY_AGENT_ID"] == agent),  # noqa: B023 - used in this iteration
                    "PersistentVolumeClaim": (f"{ns}/persistentvolumeclaims/data-agent-{agent}-0",
                                              [{"op": "remove", "path": "/metadata/labels/agentproxy.io~1session"}],
                                              lambda o: "agentproxy.io/session" in o["metadata"]["labels"]),
                }
                for kind, (path, patch, repaired) in edits.items():
                    await _call(api, "PATCH", path, patch, "application/json-patch+json",
                                {"fieldManager": "bench-editor"})
                    faults += 1

                    async def back(path=path, repaired=repaired) -> bool:
                        return repaired(await _call(api, "GET", path))
                    repairs[kind].append(await _until(back, 60))
            for kind, values in repairs.items():
                print(f"drift repair of a {kind} edit: {_p50(values)}")
            print(f"faults tried: {faults}")
        finally:
            await replicas.close()
            await _call(api, "DELETE", f"/api/v1/namespaces/{namespace}")


if __name__ == "__main__":
    asyncio.run(main())
