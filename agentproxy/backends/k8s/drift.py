"""Drift: which fields agentproxy applies no longer hold their value in a live object.

A pure comparison of a live object with what agentproxy applies to it (server-side
apply), field by field, so that drift repair touches only what agentproxy owns:

- a field agentproxy sets must be there with the same value; fields it does not set
  (other managers', server defaults, status) are never drift;
- lists the API server merges by key (containers by name, env by name, ports by port
  and protocol, ...) are compared item by item by that key, so a sidecar another
  controller adds is not drift; other lists (command, args, ...) must be equal;
- resource quantities compare by value (the server stores ``0.5`` as ``500m``);
- a PVC may hold more storage than agentproxy asks for (raised out of band): volumes
  never shrink, so only less is drift;
- fields the API server never lets anyone change (a StatefulSet's selector and claim
  templates, a PVC's spec apart from its size) are left out: applying them could only fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...quantity import parse_quantity

Path = tuple[str, ...]

LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",), "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",), "ports": ("containerPort", "port", "protocol"),
    "volumeDevices": ("devicePath",), "hostAliases": ("ip",), "conditions": ("type",),
}
"""Lists the API server merges by key (``x-kubernetes-list-map-keys``), by field name."""

_DEFAULT_KEY_VALUES = {"protocol": "TCP"}

IMMUTABLE: dict[str, tuple[Path, ...]] = {
    "StatefulSet": (("spec", "selector"), ("spec", "volumeClaimTemplates"), ("spec", "serviceName"),
                    ("spec", "podManagementPolicy")),
    "PersistentVolumeClaim": (("spec", "accessModes"), ("spec", "storageClassName"), ("spec", "volumeMode"),
                              ("spec", "selector"), ("spec", "dataSource"), ("spec", "dataSourceRef")),
    "Service": (("spec", "clusterIP"), ("spec", "clusterIPs")),
}
"""Fields of each kind that no one may change once the object exists."""

_QUANTITY_PARENTS = {"requests", "limits", "capacity"}
PVC_STORAGE: Path = ("spec", "resources", "requests", "storage")


def differences(live: Mapping[str, Any] | None, want: Mapping[str, Any]) -> list[str]:
    """The fields of ``want`` (what agentproxy applies) that ``live`` does not hold, as
    readable paths (``spec.template.spec.containers[agentapi].image``); ``["(missing)"]``
    when there is no live object, ``[]`` when nothing drifted."""
    if live is None:
        return ["(missing)"]
    kind = str(want.get("kind", ""))
    skip = IMMUTABLE.get(kind, ())
    found: list[str] = []
    for key in ("metadata", "spec", "data"):
        if key not in want:
            continue
        desired = want[key]
        if key == "metadata":
            desired = {k: v for k, v in desired.items() if k in ("labels", "annotations", "ownerReferences")}
        _compare(live.get(key), desired, (key,), kind, skip, found)
    return found


def drifted(live: Mapping[str, Any] | None, want: Mapping[str, Any]) -> bool:
    """True when ``live`` must be applied again (see :func:`differences`)."""
    return bool(differences(live, want))


def _compare(live: Any, desired: Any, path: Path, kind: str, skip: tuple[Path, ...], found: list[str]) -> None:
    if path in skip:
        return
    if live == desired:
        # Equal (compared in C, the usual case for most of an object): nothing below differs.
        return
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            found.append(_show(path))
            return
        for key, value in desired.items():
            if key not in live:
                found.append(_show(path + (key,)))
            else:
                _compare(live[key], value, path + (key,), kind, skip, found)
    elif isinstance(desired, list):
        if not isinstance(live, list):
            found.append(_show(path))
        elif path[-1] in LIST_KEYS and all(isinstance(item, Mapping) for item in desired):
            _compare_keyed(live, desired, path, kind, skip, found)
        elif len(live) != len(desired):
            found.append(_show(path))
        else:
            for index, (a, b) in enumerate(zip(live, desired, strict=True)):
                _compare(a, b, path + (str(index),), kind, skip, found)
    elif not _same_scalar(live, desired, path, kind):
        found.append(_show(path))


def _compare_keyed(live: list[Any], desired: list[Any], path: Path, kind: str, skip: tuple[Path, ...],
                   found: list[str]) -> None:
    keys = LIST_KEYS[path[-1]]
    by_key = {_item_key(item, keys): item for item in live if isinstance(item, Mapping)}
    for item in desired:
        key = _item_key(item, keys)
        label = ",".join(str(k) for k in key if k is not None)
        match = by_key.get(key)
        if match is None:
            found.append(_show(path) + f"[{label}]")
        else:
            _compare(match, item, path + (f"[{label}]",), kind, skip, found)


def _item_key(item: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(item.get(k, _DEFAULT_KEY_VALUES.get(k)) for k in keys)


def _same_scalar(live: Any, desired: Any, path: Path, kind: str) -> bool:
    if live == desired:
        return True
    if len(path) >= 2 and path[-2] in _QUANTITY_PARENTS and isinstance(live, (str, int, float)) \
            and isinstance(desired, (str, int, float)):
        try:
            have, want = parse_quantity(str(live)), parse_quantity(str(desired))
        except ValueError:
            return False
        # A volume raised out of band is kept: only less than asked for is drift.
        if kind == "PersistentVolumeClaim" and path == PVC_STORAGE:
            return have >= want
        return have == want
    return False


def _show(path: Path) -> str:
    text = ""
    for part in path:
        text += part if part.startswith("[") else (f".{part}" if text else part)
    return text


def larger_quantity(a: str, b: str | None) -> str:
    """``a``, or ``b`` when it is a larger quantity (a volume is never asked to shrink)."""
    if b is None:
        return a
    try:
        return b if parse_quantity(str(b)) > parse_quantity(str(a)) else a
    except ValueError:
        return a
