"""The one table of the Kubernetes kinds agentproxy manages: API group and version,
plural, and the paths of their collections and objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    """A namespaced resource: its kind, ``apiVersion`` and plural."""

    name: str  # "StatefulSet", ...
    api_version: str  # "apps/v1", "v1", ...
    plural: str

    @property
    def prefix(self) -> str:
        """``/api/v1`` for the core group, ``/apis/GROUP/VERSION`` otherwise."""
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    def collection(self, namespace: str) -> str:
        """The path of the kind's objects in ``namespace``."""
        return f"{self.prefix}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        """The path of one object."""
        return f"{self.collection(namespace)}/{name}"


STATEFULSET = Kind("StatefulSet", "apps/v1", "statefulsets")
POD = Kind("Pod", "v1", "pods")
PVC = Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaims")
SERVICE = Kind("Service", "v1", "services")
CONFIGMAP = Kind("ConfigMap", "v1", "configmaps")
EVENT = Kind("Event", "v1", "events")
SERVICE_ACCOUNT = Kind("ServiceAccount", "v1", "serviceaccounts")
ROLE = Kind("Role", "rbac.authorization.k8s.io/v1", "roles")
ROLE_BINDING = Kind("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings")
SECRET = Kind("Secret", "v1", "secrets")
LEASE = Kind("Lease", "coordination.k8s.io/v1", "leases")

KINDS = (CONFIGMAP, SERVICE, PVC, STATEFULSET, POD)
"""The kinds of an agent's objects, which the cache lists and watches."""
EVENT_SOURCES = (STATEFULSET, PVC)
"""Kinds whose Events the cache watches too: what the StatefulSet controller and the volume
binder report there (a pod they could not create, a claim they could not provision) is
nowhere else."""
MANAGED = (*KINDS, SERVICE_ACCOUNT, ROLE, ROLE_BINDING, SECRET, LEASE)
"""Every kind agentproxy writes (``agentproxy rbac`` renders the ServiceAccount, Role and
RoleBinding; Secrets hold the teams' credentials, see :mod:`.secrets`; Leases the schedules'
claims, see :mod:`.leases`)."""

_BY_TYPE: dict[tuple[Any, Any], Kind] = {(k.api_version, k.name): k for k in MANAGED}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    """The kind of an object, or ``ValueError`` for one agentproxy does not manage."""
    kind = _BY_TYPE.get((obj.get("apiVersion"), obj.get("kind")))
    if kind is None:
        raise ValueError(f"agentproxy does not manage {obj.get('kind')} ({obj.get('apiVersion')}) objects")
    return kind


def path_of(obj: Mapping[str, Any]) -> str:
    """The path of a namespaced object (``ValueError`` for a kind agentproxy does not manage)."""
    meta = obj["metadata"]
    return kind_of(obj).item(meta["namespace"], meta["name"])
