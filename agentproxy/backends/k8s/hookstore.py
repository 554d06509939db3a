"""Hooks defined through the API in k8s mode: every replica reads them from the agents' namespace.

- ConfigMap ``agentproxy-hooks``: one key per hook, its stored definition as JSON (secret-free:
  see :mod:`agentproxy.triggers.defined`);
- Secret ``agentproxy-hook-secrets``: one key per hook whose secret was given as a value.

Each change is a JSON merge patch of one key, so two replicas defining two hooks at once both
land (a replace of the same hook: the last write wins, as with ``kubectl apply``). The secret is
written before the definition that names it and removed after it. Both objects are made on the
first write (a 409 of the create: another replica made it first). Replicas read them again on a
miss and every few seconds (:class:`agentproxy.triggers.hookbook.HookBook`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from ..errors import Conflict, NotFound
from .kinds import CONFIGMAP, SECRET

DEFINITIONS = "agentproxy-hooks"
SECRETS = "agentproxy-hook-secrets"
LABELS = {"app.kubernetes.io/part-of": "agentproxy", "app.kubernetes.io/component": "hooks"}
"""Not managed-by agentproxy: the agents' cache selects by that label, and these are no agent's."""


class ClusterHookStore:
    """The defined hooks in a ConfigMap and a Secret of one namespace."""

    def __init__(self, client: Callable[[], Any], namespace: str, field_manager: str) -> None:
        self._client = client
        self.namespace = namespace
        self.field_manager = field_manager

    @property
    def client(self) -> Any:
        """The backend's client (started with the backend, after this store is made)."""
        return self._client()

    async def read(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every stored definition and secret value (the Secret only read when one is stored)."""
        live = await self.client.get(CONFIGMAP.item(self.namespace, DEFINITIONS), resource="configmaps")
        definitions: dict[str, dict[str, Any]] = {}
        for hook_id, text in ((live or {}).get("data") or {}).items():
            try:
                stored = json.loads(text)
            except ValueError:
                continue
            if isinstance(stored, dict):
                definitions[hook_id] = stored
        secrets: dict[str, str] = {}
        if any(d.get("secret") == "stored" for d in definitions.values()):
            secret = await self.client.get(SECRET.item(self.namespace, SECRETS), resource="secrets")
            for hook_id, encoded in ((secret or {}).get("data") or {}).items():
                try:
                    secrets[hook_id] = base64.b64decode(encoded).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    continue
        return definitions, secrets

    async def _patch(self, kind: Any, name: str, data: dict[str, Any]) -> None:
        """Merge ``data`` into the object, made first when it is missing."""
        path = kind.item(self.namespace, name)
        params = {"fieldManager": self.field_manager}
        for _ in range(3):
            try:
                await self.client.request("PATCH", path, body={"data": data}, params=params, verb="patch",
                                          resource=kind.plural, content_type="application/merge-patch+json")
                return
            except NotFound:  # make it, then patch it
                body: dict[str, Any] = {"apiVersion": "v1", "kind": kind.name, "metadata": {
                    "name": name, "namespace": self.namespace, "labels": LABELS}, "data": {}}
                if kind is SECRET:
                    body["type"] = "Opaque"
                try:
                    await self.client.request("POST", kind.collection(self.namespace), body=body, params=params,
                                              verb="create", resource=kind.plural)
                except Conflict:
                    pass  # another replica made it first
        raise Conflict(f"{name} could not be written; try again")

    async def put(self, hook_id: str, stored: dict[str, Any], secret: str | None) -> None:
        """Create or replace one hook (the secret first, any value no longer used removed after)."""
        if secret is not None:
            await self._patch(SECRET, SECRETS, {hook_id: base64.b64encode(secret.encode()).decode("ascii")})
        await self._patch(CONFIGMAP, DEFINITIONS, {hook_id: json.dumps(stored, sort_keys=True)})
        if secret is None:
            await self._drop_secret(hook_id)

    async def _drop_secret(self, hook_id: str) -> None:
        live = await self.client.get(SECRET.item(self.namespace, SECRETS), resource="secrets")
        if live is not None and hook_id in (live.get("data") or {}):
            await self._patch(SECRET, SECRETS, {hook_id: None})

    async def delete(self, hook_id: str) -> bool:
        """Remove one hook, then its secret; False when there was none."""
        live = await self.client.get(CONFIGMAP.item(self.namespace, DEFINITIONS), resource="configmaps")
        found = hook_id in ((live or {}).get("data") or {})
        if found:
            await self._patch(CONFIGMAP, DEFINITIONS, {hook_id: None})
        await self._drop_secret(hook_id)
        return found
