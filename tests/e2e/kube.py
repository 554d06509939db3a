"""Small helpers for the e2e suite: raw API calls and polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import kr8s
import kr8s.asyncio
import pytest

from agentproxy.backends.k8s.kinds import kind_of

DEFAULT_TIMEOUT = 90.0


async def request(api: kr8s.asyncio.Api, method: str, path: str, *, body: Any = None,
                  headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                  ok: tuple[int, ...] = ()) -> tuple[int, dict]:
    """One API call by absolute path (``/api/v1/...``); returns (status, JSON body).
    Statuses in ``ok`` are returned instead of raised."""
    base, _, rest = path.lstrip("/").partition("/")
    kwargs: dict[str, Any] = {"headers": dict(headers or {}), "params": dict(params or {})}
    if body is not None:
        kwargs["json"] = body
    try:
        async with api.call_api(method, version="", base=f"/{base}", url=rest, **kwargs) as resp:
            return resp.status_code, (resp.json() if resp.content else {})
    except kr8s.ServerError as exc:
        if exc.response is not None and exc.response.status_code in ok:
            return exc.response.status_code, exc.response.json()
        raise


async def get(api: kr8s.asyncio.Api, path: str) -> dict | None:
    """The object at ``path``, or None when it does not exist."""
    status, body = await request(api, "GET", path, ok=(404,))
    return None if status == 404 else body


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


async def create_namespace(api: kr8s.asyncio.Api, name: str, labels: Mapping[str, str]) -> None:
    await request(api, "POST", "/api/v1/namespaces",
                  body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}})
    # Pods need the namespace's default ServiceAccount, which a controller creates.
    await wait_for(lambda: get(api, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
                   f"the default ServiceAccount of {name}")


async def delete_namespace(api: kr8s.asyncio.Api, name: str) -> None:
    await request(api, "DELETE", f"/api/v1/namespaces/{name}", ok=(404,))


def condition(obj: Mapping[str, Any] | None, kind: str) -> bool:
    """True when ``obj`` has status condition ``kind`` set to True."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


async def server_side_apply(api: kr8s.asyncio.Api, obj: Mapping[str, Any], *, field_manager: str = "agentproxy",
                            force: bool = False, dry_run: bool = False,
                            headers: Mapping[str, str] | None = None) -> dict:
    """Apply ``obj`` like ``kubectl apply --server-side``, with kr8s alone (not through
    agentproxy's client), and return the object the server stored (or would store, with
    ``dry_run``). Raises ``kr8s.ServerError``."""
    kind, meta = kind_of(obj), obj["metadata"]
    params = {"fieldManager": field_manager, "force": "true" if force else "false"}
    if dry_run:
        params["dryRun"] = "All"
    async with api.call_api(
        "PATCH", version=kind.api_version, namespace=meta["namespace"], url=f"{kind.plural}/{meta['name']}",
        params=params, content=json.dumps(obj),
        headers={"Content-Type": "application/apply-patch+yaml", **(headers or {})},
    ) as response:
        return response.json()


def required_kubeconfig() -> str:
    """Path of the kubeconfig; without one the test fails when `just e2e` requires a cluster
    (``AGENTPROXY_E2E_REQUIRED=1``) and is skipped otherwise."""
    path = os.environ.get("KUBECONFIG", "")
    if not path or not Path(path.split(os.pathsep)[0]).exists():
        message = ("no cluster: KUBECONFIG is unset or missing; start one with `just cluster-up` "
                   "(or `just kind-up`) and export the KUBECONFIG it prints")
        if os.environ.get("AGENTPROXY_E2E_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.asynccontextmanager
async def fresh_namespace(api: kr8s.asyncio.Api) -> AsyncIterator[str]:
    """A new namespace enforcing the `restricted` Pod Security Standard, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    await create_namespace(api, name, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    try:
        yield name
    finally:
        await delete_namespace(api, name)
