"""Credentials in k8s mode: one Secret per holder (a user or a group) keeps their credentials,
and one Secret per agent holds the values its profile maps, which the agent's container reads
by ``secretKeyRef`` (rendered with names only: a value is never in a ConfigMap or ``render``).

- A holder's Secret, ``agentproxy-credentials-<kind>-<name>-<hash>``, is labelled
  ``app.kubernetes.io/component: credentials`` and managed by agentproxy; each credential is one
  key of its data, and its update time one annotation. Each change is a JSON merge patch of one
  key, so two replicas setting two credentials of one holder at once both land.
- An agent's Secret (``agent-<id>-credentials``) is written before each start and resume from
  the holders' Secrets (the owner's credential, else the shared group's, else one of the owner's
  groups'), owned by the agent's ConfigMap so that it goes with the agent.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

from ... import naming
from ...teams.credentials import Holder
from ..errors import Conflict
from .kinds import SECRET

COMPONENT = "credentials"
HOLDER_ANNOTATION = "agentproxy.io/credentials-holder"
UPDATED_PREFIX = "updated.credentials.agentproxy.io/"
"""Annotation of a holder's Secret per credential: its update time (seconds since the epoch)."""


def holder_secret_name(holder: Holder) -> str:
    """The Secret of ``holder``'s credentials: readable, and unique by a hash of kind and name
    (user names may hold '@' or capitals, which Secret names may not)."""
    readable = re.sub(r"[^a-z0-9-]+", "-", holder.name.lower()).strip("-")[:40] or "x"
    digest = hashlib.sha256(f"{holder.kind}:{holder.name}".encode()).hexdigest()[:10]
    return f"agentproxy-credentials-{holder.kind}-{readable}-{digest}"


def agent_secret_name(agent_id: str) -> str:
    """The Secret of an agent's credential variables."""
    return f"{naming.statefulset_name(agent_id)}-credentials"


def holder_secret(namespace: str, holder: Holder) -> dict[str, Any]:
    """A new, empty Secret of ``holder``."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {
        "name": holder_secret_name(holder), "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "agentproxy", "app.kubernetes.io/component": COMPONENT,
                   "agentproxy.io/credentials-kind": holder.kind},
        "annotations": {HOLDER_ANNOTATION: f"{holder.kind}/{holder.name}"}}, "data": {}}


def agent_secret(namespace: str, agent_id: str, session: str, env: Mapping[str, str],
                 owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Secret of an agent's credential variables (``env``), owned by ``owner`` (its ConfigMap)."""
    metadata: dict[str, Any] = {"name": agent_secret_name(agent_id), "namespace": namespace,
                                "labels": naming.standard_labels(agent_id, session, component=COMPONENT)}
    if owner is not None:
        meta = owner["metadata"]
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"],
                                        "uid": meta["uid"]}]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
            "data": {k: _b64(v) for k, v in sorted(env.items())}}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


def _values(secret: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, encoded in ((secret or {}).get("data") or {}).items():
        try:
            out[name] = base64.b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out


class SecretCredentialStore:
    """The credentials of each holder in its Secret (see the module's docstring)."""

    def __init__(self, client: Any, namespace: str, field_manager: str) -> None:
        self.client = client
        self.namespace = namespace
        self.field_manager = field_manager

    def _path(self, holder: Holder) -> str:
        return SECRET.item(self.namespace, holder_secret_name(holder))

    async def _get(self, holder: Holder) -> dict[str, Any] | None:
        secret: dict[str, Any] | None = await self.client.get(self._path(holder), resource="secrets")
        return secret

    async def put(self, holder: Holder, name: str, value: str) -> float:
        """Set (or replace) a credential; its update time."""
        now = time.time()
        patch = {"metadata": {"annotations": {UPDATED_PREFIX + name: f"{now:.3f}"}}, "data": {name: _b64(value)}}
        for _ in range(3):
            if await self._get(holder) is None:
                try:
                    await self.client.request("POST", SECRET.collection(self.namespace), body=holder_secret(
                        self.namespace, holder), params={"fieldManager": self.field_manager}, verb="create",
                        resource="secrets")
                except Conflict:
                    pass  # another replica made it first: patch it
            try:
                await self._patch(holder, patch)
                return now
            except Conflict:
                continue
        raise Conflict(f"the Secret of {holder.kind} {holder.name!r} kept changing; try again")

    async def _patch(self, holder: Holder, patch: Mapping[str, Any]) -> None:
        await self.client.request("PATCH", self._path(holder), body=patch, content_type="application/merge-patch+json",
                                  params={"fieldManager": self.field_manager}, verb="patch", resource="secrets")

    async def delete(self, holder: Holder, name: str) -> bool:
        """Remove a credential; False when there was none."""
        secret = await self._get(holder)
        if secret is None or name not in (secret.get("data") or {}):
            return False
        await self._patch(holder, {"metadata": {"annotations": {UPDATED_PREFIX + name: None}}, "data": {name: None}})
        return True

    async def names(self, holder: Holder) -> dict[str, float]:
        """Each credential's name and update time (never a value)."""
        secret = await self._get(holder)
        if secret is None:
            return {}
        annotations = secret["metadata"].get("annotations") or {}
        out = {}
        for name in secret.get("data") or {}:
            try:
                out[name] = float(annotations.get(UPDATED_PREFIX + name) or 0)
            except ValueError:
                out[name] = 0.0
        return out

    async def values(self, holder: Holder) -> dict[str, str]:
        """Every credential value of ``holder``, for an agent's Secret only."""
        return _values(await self._get(holder))
