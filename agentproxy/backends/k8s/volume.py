"""The agent's PVC, which the StatefulSet controller makes: pure decisions, no I/O.

The StatefulSet's claim template names the claim of its pod, so its controller makes
the agent's PVC before the pod, from that template. A create therefore leaves the
PVC to it whenever the PVC rendered on its own (``pvc.yaml.j2``) is exactly what the
claim template gives, and drift repair does not count a missing PVC the controller
is about to make. A PVC template that asks for more is applied as before.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from . import drift
from .kinds import PVC
from .model import AgentObjects, ApplyPlan, Obj


def create_plan(plan: ApplyPlan, live_pvc: Obj | None) -> ApplyPlan:
    """The plan of a create: the PVC is left out when the StatefulSet controller makes it just
    as rendered (from the StatefulSet's claim template, for its pod), or when the PVC that is
    there (data kept from an earlier agent of this id) already holds what would be applied.
    One request less per create; drift repair applies the PVC like any object should it ever
    differ. A template that renders a PVC its StatefulSet would not make keeps it applied."""
    pvc, statefulset = plan.first
    if live_pvc is not None:
        leave = not drift.differences(live_pvc, pvc)
    else:
        made = claim_from_template(statefulset, pvc["metadata"]["name"])
        leave = made is not None and _same_claim(made, pvc)
    return dataclasses.replace(plan, first=(statefulset,)) if leave else plan


def claim_from_template(statefulset: Obj, name: str) -> dict[str, Any] | None:
    """The claim named ``name`` that the StatefulSet controller makes for one of its pods from a
    volumeClaimTemplate (``TEMPLATE-STATEFULSET-ORDINAL``), as it makes it: the template's
    metadata with the selector's labels added, and its spec; None when no template makes it."""
    meta = statefulset["metadata"]
    spec = statefulset.get("spec") or {}
    for template in spec.get("volumeClaimTemplates") or []:
        template_meta = template.get("metadata") or {}
        prefix = f"{template_meta.get('name')}-{meta['name']}-"
        if not name.startswith(prefix) or not name[len(prefix):].isdigit():
            continue
        labels = {**(template_meta.get("labels") or {}), **((spec.get("selector") or {}).get("matchLabels") or {})}
        made_meta = {**copy.deepcopy(dict(template_meta)), "name": name, "namespace": meta.get("namespace"),
                     "labels": labels}
        return {"apiVersion": "v1", "kind": PVC.name, "metadata": made_meta, "spec": copy.deepcopy(template.get("spec"))}
    return None


def pvc_awaited(objects: AgentObjects, want_pvc: Obj, want_statefulset: Obj) -> bool:
    """True when a missing PVC is the StatefulSet controller's to make (see :func:`create_plan`):
    the StatefulSet is there, and its claim template (as rendered: the stored one carries the
    server's defaults) makes the PVC as rendered; the controller makes a missing one before each
    pod it starts (a PVC in use cannot go while its pod runs). Then its absence is no drift,
    however late the claim's watch event arrives (that of the pod may come first)."""
    sts = objects.statefulset
    if objects.pvc is not None or sts is None or sts["metadata"].get("deletionTimestamp"):
        return False
    made = claim_from_template(want_statefulset, want_pvc["metadata"]["name"])
    return made is not None and _same_claim(made, want_pvc)


def _same_claim(made: Obj, want: Obj) -> bool:
    """True when ``want`` (a rendered PVC) asks for nothing ``made`` does not hold, exactly."""
    if set(want) - {"apiVersion", "kind", "metadata", "spec"}:
        return False
    meta, made_meta = want["metadata"], made["metadata"]
    if set(meta) - {"name", "namespace", "labels", "annotations"}:
        return False
    return (meta["name"] == made_meta["name"] and meta.get("namespace") == made_meta.get("namespace")
            and (meta.get("labels") or {}) == made_meta["labels"]
            and (meta.get("annotations") or {}) == (made_meta.get("annotations") or {})
            and want.get("spec") == made.get("spec"))
