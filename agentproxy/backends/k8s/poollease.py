"""Which replica refills the warm pools: the holder of a lease in one ConfigMap.

Every replica sees the same members, and each one alone would make the members missing: two
replicas would make twice as many. So a replica makes or removes members only while it holds
the lease, ``agentproxy-pool-refill``: a ConfigMap whose annotations name its holder (a random
id of the proxy process) and when it was last renewed. It is taken, renewed and taken over by
merge patches carrying the ``resourceVersion`` read (of two replicas, one write wins), and only
when a refill has something to do: a replica with nothing to do reads nothing. A holder that
stops lets it go (:meth:`RefillLease.release`); one that dies (or stops renewing) is replaced
once the lease is :data:`EXPIRES_AFTER` seconds old.

Like the quota ledger, the ConfigMap is not labelled managed-by agentproxy: it is no agent's.
:func:`step` is the pure decision; :class:`RefillLease` does the reads and writes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import Conflict, NotFound
from .kinds import CONFIGMAP

LEASE_NAME = "agentproxy-pool-refill"
HOLDER_ANNOTATION = "agentproxy.io/pool-refill-holder"
RENEWED_ANNOTATION = "agentproxy.io/pool-refill-renewed"
RENEW_AFTER = 5.0
"""Seconds after which the holder renews the lease when it refills."""
EXPIRES_AFTER = 15.0
"""Seconds after its last renewal that another replica may take the lease over."""

CREATE, RENEW, TAKE, HOLD, WAIT = "create", "renew", "take", "hold", "wait"


def step(lease: Mapping[str, Any] | None, me: str, now: float) -> str:
    """What a replica (``me``) that has a refill to do does with the lease: ``create`` it (there
    is none), ``hold`` it (its own, fresh), ``renew`` it (its own, older than
    :data:`RENEW_AFTER`), ``take`` it (another's, expired) or ``wait`` (another's, fresh)."""
    if lease is None:
        return CREATE
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    try:
        age = now - float(annotations.get(RENEWED_ANNOTATION) or "")
    except ValueError:
        age = float("inf")  # unreadable: as good as expired
    if annotations.get(HOLDER_ANNOTATION) == me:
        return RENEW if age >= RENEW_AFTER else HOLD
    return TAKE if age >= EXPIRES_AFTER else WAIT


def held_by(me: str, now: float) -> dict[str, Any]:
    """The annotations of a lease ``me`` holds, renewed at ``now``."""
    return {"annotations": {HOLDER_ANNOTATION: me, RENEWED_ANNOTATION: f"{now:.3f}"}}


class RefillLease:
    """The refill lease of one namespace, as one replica holds it or not."""

    def __init__(self, client: Any, namespace: str, field_manager: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.namespace = namespace
        self.field_manager = field_manager
        self.clock = clock
        self.me = secrets.token_hex(8)
        """This replica, as the lease names it."""

    async def held(self) -> bool:
        """True when this replica holds the lease now (taken, renewed or created as needed)."""
        path = CONFIGMAP.item(self.namespace, LEASE_NAME)
        lease = await self.client.get(path, resource="configmaps")
        now = self.clock()
        action = step(lease, self.me, now)
        if action in (HOLD, WAIT):
            return action == HOLD
        try:
            if action == CREATE:
                await self.client.request("POST", CONFIGMAP.collection(self.namespace), body={
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/part-of": "agentproxy",
                                            "app.kubernetes.io/component": "pool-refill"},
                                 **held_by(self.me, now)}}, params={"fieldManager": self.field_manager},
                    verb="create", resource="configmaps")
            else:
                assert lease is not None
                patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"],
                                      **held_by(self.me, now)}}
                await self.client.request("PATCH", path, body=patch, content_type="application/merge-patch+json",
                                          params={"fieldManager": self.field_manager}, verb="patch",
                                          resource="configmaps")
        except (Conflict, NotFound):
            return False  # another replica wrote first: it holds the lease
        return True

    async def release(self) -> None:
        """Let another replica take the lease at once (this one stops): expired, if it is ours."""
        path = CONFIGMAP.item(self.namespace, LEASE_NAME)
        lease = await self.client.get(path, resource="configmaps")
        if lease is None or step(lease, self.me, self.clock()) not in (HOLD, RENEW):
            return
        patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"],
                              "annotations": {RENEWED_ANNOTATION: "0"}}}
        try:
            await self.client.request("PATCH", path, body=patch, content_type="application/merge-patch+json",
                                      params={"fieldManager": self.field_manager}, verb="patch",
                                      resource="configmaps")
        except (Conflict, NotFound):
            pass  # changed meanwhile: not ours any more
