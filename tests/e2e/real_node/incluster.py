"""agentproxy deployed in the test cluster from ``deploy/``: kubectl, the test
overlay, and following an agent's event stream through a proxy pod."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import aiohttp
import yaml

from testenv.layout import Layout

from .rn import ROOT

NAMESPACE = "agentapi-proxy"
DEPLOYMENT = "agentapi-proxy"
OVERLAY = ROOT / "deploy" / "overlays" / "real-node"
SELECTOR = "app.kubernetes.io/name=agentproxy,app.kubernetes.io/component=proxy"


def kubectl(*args: str, check: bool = True, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """kubectl of the test cluster's release, on $KUBECONFIG."""
    argv = [str(Layout.from_env().binary("kubernetes", "kubectl")), *args]
    result = subprocess.run(argv, capture_output=True, text=True, input=stdin, timeout=timeout, env=dict(os.environ))
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def write_overlay(directory: Path, api_key: str) -> Path:
    """The test overlay: deploy/overlays/real-node (the locally built images, every pod on the
    real node) and the Secret with the digest of ``api_key``. kustomize wants its bases as
    relative paths."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAY, directory)],
        "secretGenerator": [{
            "name": "agentapi-proxy-api-keys", "namespace": NAMESPACE,
            "options": {"disableNameSuffixHash": True},
            "literals": [f"api-keys=[{{name: e2e, sha256: {digest}, admin: true}}]"],
        }],
    }))
    return directory


def role_without(role: dict, resource: str, verb: str) -> dict:
    """``role`` with ``verb`` taken from the rule that grants it on ``resource``."""
    rules = []
    for rule in role["rules"]:
        if resource in rule["resources"] and verb in rule["verbs"]:
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v != verb]}
        rules.append(rule)
    return {"apiVersion": role["apiVersion"], "kind": "Role",
            "metadata": {"name": role["metadata"]["name"], "namespace": role["metadata"]["namespace"]},
            "rules": rules}


class EventStream:
    """An agent's agentapi event stream (SSE) read through one proxy pod, in the background."""

    def __init__(self, http: aiohttp.ClientSession, route: str) -> None:
        self.lines: list[str] = []
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._read(http, route))

    async def _read(self, http: aiohttp.ClientSession, route: str) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with http.get(f"{route}/events", headers={"Host": "localhost"}, timeout=timeout) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    self.lines.append(line.decode(errors="replace"))
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            self.error = exc
        finally:
            self.ended.set()

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
