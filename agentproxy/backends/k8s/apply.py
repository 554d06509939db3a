"""Server-side apply through kr8s.

kr8s has no apply method yet; its documented escape hatch, ``Api.call_api``,
sends the PATCH that ``kubectl apply --server-side`` sends: content type
``application/apply-patch+yaml`` (JSON is YAML), a field manager, and
optionally ``force`` and ``dryRun=All``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import kr8s.asyncio

# (apiVersion, kind) -> plural resource name, for every kind agentproxy manages.
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "Pod"): "pods",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
}


def resource_path(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(apiVersion, namespace, "plural/name")`` of a namespaced object."""
    key = (obj["apiVersion"], obj["kind"])
    if key not in RESOURCES:
        raise ValueError(f"agentproxy does not manage {obj['kind']} ({obj['apiVersion']}) objects")
    meta = obj["metadata"]
    return obj["apiVersion"], meta["namespace"], f"{RESOURCES[key]}/{meta['name']}"


async def server_side_apply(
    api: kr8s.asyncio.Api,
    obj: Mapping[str, Any],
    *,
    field_manager: str = "agentproxy",
    force: bool = False,
    dry_run: bool = False,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Apply ``obj`` like ``kubectl apply --server-side`` and return the object the
    server stored (or would store, with ``dry_run``). Raises ``kr8s.ServerError``."""
    version, namespace, url = resource_path(obj)
    params = {"fieldManager": field_manager, "force": "true" if force else "false"}
    if dry_run:
        params["dryRun"] = "All"
    async with api.call_api(
        "PATCH", version=version, namespace=namespace, url=url, params=params,
        content=json.dumps(obj), headers={"Content-Type": "application/apply-patch+yaml", **(headers or {})},
    ) as response:
        return response.json()
