"""One plan for applying an agent's objects: which, in which order, forced or not, owned or not.

:func:`plan` decides it for every write of an agent's rendered objects, as a pure function of
what the templates render, what the watch cache holds and what the write is for
(:class:`Purpose`); :func:`carry_out` is the one loop that executes a plan, through the
backend's server-side apply. The rules:

- the order is the PVC, then the StatefulSet (the owner), then the Service it owns (given an
  ownerReference to the StatefulSet as stored once it exists), then the ConfigMap; a create
  first *creates* the ConfigMap, its claim on the id (see :mod:`.backend`), with all it holds,
  and does not apply it again;
- a PVC is never asked for less storage than it holds (a volume raised out of band is kept;
  the API server refuses to shrink one);
- a create leaves the PVC to the StatefulSet controller when its claim template makes it just
  as rendered (one request less per create), or when the PVC that is there (data kept from an
  earlier agent of the id) already holds what would be applied; a PVC it does apply is forced:
  its fields may belong to the controller, which made it from the claim template;
- drift repair applies only what a live object no longer holds, forced, and leaves alone an
  object being deleted and a missing PVC the controller is about to make;
- a suspend or resume applies the StatefulSet alone, forced, on the condition that it has not
  changed since it was read (of several proxies exactly one carries it out);
- everything else is applied with the configured ``k8s_mode.force_conflicts``.

Rendered objects may be shared (the backend caches them): nothing here changes one; a changed
object is a copy.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base import BackendError
from . import drift
from .kinds import CONFIGMAP, PVC, SERVICE, STATEFULSET
from .model import AgentObjects, Obj, owner_reference, unless_changed, with_owner

OWNED = (SERVICE,)
"""Kinds applied with an ownerReference to the agent's StatefulSet (collected with it). Not the
ConfigMap: it exists before the StatefulSet (it is the create's claim), so owning it took a
second write of it in every create (a quarter of a create's requests, and one more change sent
to every watcher of ConfigMaps). A delete removes it by name, and the reconciler removes a claim
left without its StatefulSet (see :func:`.model.abandoned_claim`)."""
APPLIED = (PVC, STATEFULSET, SERVICE, CONFIGMAP)
"""The kinds agentproxy applies for an agent, in apply order; drift repair keeps all four."""
_OWNED_NAMES = frozenset(k.name for k in OWNED)


class Purpose(enum.Enum):
    """What a write of an agent's objects is for."""

    CREATE = "create"
    """A new agent: the claim (its ConfigMap) is created first, then every other object applied."""
    REAPPLY = "reapply"
    """A repeated create of an existing agent: every object applied again, like ``kubectl apply``."""
    REPAIR = "repair"
    """Drift repair: only the objects a live one no longer matches, forced."""
    SCALE = "scale"
    """A suspend or resume: the StatefulSet alone, forced, unless it changed since it was read."""


@dataclass(frozen=True)
class Step:
    """One server-side apply of a plan."""

    obj: Mapping[str, Any]
    """The object as rendered (the PVC: as wanted), without its ownerReference."""
    force: bool | None
    """Take fields from other managers; None: as ``k8s_mode.force_conflicts`` says."""
    owned: bool = False
    """Applied with an ownerReference to the StatefulSet, once it exists."""
    drift: tuple[str, ...] = ()
    """For a repair: the fields a live object no longer holds (``("(missing)",)``: no object)."""

    @property
    def kind(self) -> str:
        """The object's kind."""
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        """The object's name."""
        return str(self.obj["metadata"]["name"])

    @property
    def drifted(self) -> str:
        """How a repaired object drifted, for people."""
        if self.drift == ("(missing)",):
            return "deleted out of band"
        more = f" and {len(self.drift) - 5} more" if len(self.drift) > 5 else ""
        return "changed out of band: " + ", ".join(self.drift[:5]) + more

    def applied(self, owner: Obj | None) -> dict[str, Any]:
        """The object as it is applied: owned by ``owner`` (the stored StatefulSet) when the
        step is owned and the owner exists."""
        return as_applied(self.obj, owner) if self.owned else dict(self.obj)


@dataclass(frozen=True)
class Plan:
    """What a write of an agent's objects does, in order."""

    steps: tuple[Step, ...]
    claim: Mapping[str, Any] | None = None
    """A create's claim: the ConfigMap, created (not applied) before every step."""
    owner: Obj | None = None
    """The stored StatefulSet owned steps point at until a step applies one."""

    @property
    def kinds(self) -> list[str]:
        """The kinds of the steps, in order."""
        return [step.kind for step in self.steps]


def plan(rendered: Iterable[Mapping[str, Any]], live: AgentObjects, purpose: Purpose) -> Plan:
    """The plan of writing an agent's ``rendered`` objects (any order) for ``purpose``, given
    what is ``live`` (as the watch cache holds it; for :attr:`Purpose.SCALE`, the StatefulSet
    as last read)."""
    by_kind = {str(o["kind"]): o for o in rendered}
    statefulset = by_kind[STATEFULSET.name]
    if purpose is Purpose.SCALE:
        if live.statefulset is None:
            raise ValueError("a StatefulSet is scaled only once it exists")
        guarded = unless_changed(statefulset, live.statefulset["metadata"]["resourceVersion"])
        return Plan((Step(guarded, force=True),), owner=live.statefulset)
    wanted = {**by_kind, PVC.name: wanted_pvc(by_kind[PVC.name], live.pvc)}
    if purpose is Purpose.REPAIR:
        return Plan(tuple(_repairs(wanted, live)), owner=live.statefulset)
    steps = []
    for kind in APPLIED:
        obj = wanted[kind.name]
        force = None
        if purpose is Purpose.CREATE and kind is PVC:
            if _left_to_controller(obj, statefulset, live.pvc):
                continue
            force = True
        if purpose is Purpose.CREATE and kind is CONFIGMAP:
            continue  # the claim, created as rendered before every step
        steps.append(Step(obj, force=force, owned=kind in OWNED))
    claim = by_kind[CONFIGMAP.name] if purpose is Purpose.CREATE else None
    return Plan(tuple(steps), claim=claim, owner=live.statefulset)


def _repairs(wanted: Mapping[str, Mapping[str, Any]], live: AgentObjects) -> Iterable[Step]:
    """The steps of a drift repair: every object that a live one no longer matches."""
    held: dict[str, Obj | None] = {PVC.name: live.pvc, STATEFULSET.name: live.statefulset,
                                   SERVICE.name: live.service, CONFIGMAP.name: live.claim}
    for kind in APPLIED:
        want = as_applied(wanted[kind.name], live.statefulset)
        obj = held[kind.name]
        if obj is not None and obj["metadata"].get("deletionTimestamp"):
            continue  # being deleted: it can be applied again once it is gone
        if kind is PVC and pvc_awaited(live, want, wanted[STATEFULSET.name]):
            continue  # the StatefulSet controller makes it before the pod
        changed = drift.differences(obj, want)
        if changed:
            # A live object is applied again only at the version compared: of two replicas
            # repairing one drift at once, one does it, the other's apply is refused (409).
            version = None if obj is None else obj["metadata"].get("resourceVersion")
            again = wanted[kind.name] if version is None else unless_changed(wanted[kind.name], version)
            yield Step(again, force=True, owned=kind in OWNED, drift=tuple(changed))


async def carry_out(plan: Plan, apply: Callable[..., Awaitable[dict[str, Any]]], *,
                    on_failure: Callable[[Step, BackendError], None] | None = None,
                    ) -> list[tuple[Step, dict[str, Any]]]:
    """Execute ``plan``'s steps in order through ``apply(obj, force=...)`` (the backend's
    server-side apply), owned objects pointing at the StatefulSet the server stored; each step
    carried out with the object the server answered, in order. A failure ends the plan, unless ``on_failure`` is
    given: then it is told, and the other steps go on (what a repair does)."""
    owner = plan.owner
    stored = []
    for step in plan.steps:
        try:
            answer = await apply(step.applied(owner), force=step.force)
        except BackendError as exc:
            if on_failure is None:
                raise
            on_failure(step, exc)
            continue
        if step.kind == STATEFULSET.name:
            owner = answer
        stored.append((step, answer))
    return stored


# --- ownership ---------------------------------------------------------------------------------

def as_applied(obj: Mapping[str, Any], statefulset: Obj | None) -> dict[str, Any]:
    """``obj`` as it is applied: owned by the StatefulSet when of an owned kind and the
    StatefulSet exists."""
    if statefulset is not None and obj["kind"] in _OWNED_NAMES:
        return with_owner(obj, owner_reference(statefulset))
    return dict(obj)


# --- the PVC -----------------------------------------------------------------------------------

def wanted_pvc(rendered: Mapping[str, Any], live: Obj | None) -> Mapping[str, Any]:
    """The PVC as agentproxy applies it: never asking for less storage than the live one holds
    (``rendered`` itself when that changes nothing)."""
    if live is None:
        return rendered
    requests = rendered["spec"]["resources"]["requests"]
    held = (((live.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    larger = drift.larger_quantity(requests["storage"], held)
    if larger == requests["storage"]:
        return rendered
    spec = rendered["spec"]
    resources = {**spec["resources"], "requests": {**requests, "storage": larger}}
    return {**rendered, "spec": {**spec, "resources": resources}}


def _left_to_controller(pvc: Mapping[str, Any], statefulset: Mapping[str, Any], live: Obj | None) -> bool:
    """True when a create need not apply the PVC: the one there holds what would be applied,
    or, with none there, the StatefulSet's claim template makes it just as rendered. A
    template that renders a PVC its StatefulSet would not make keeps it applied."""
    if live is not None:
        return not drift.differences(live, pvc)
    made = claim_from_template(statefulset, pvc["metadata"]["name"])
    return made is not None and _same_claim(made, pvc)


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
    """True when a missing PVC is the StatefulSet controller's to make: the StatefulSet is
    there, and its claim template (as rendered: the stored one carries the server's defaults)
    makes the PVC as rendered; the controller makes a missing one before each pod it starts (a
    PVC in use cannot go while its pod runs). Then its absence is no drift, however late the
    claim's watch event arrives (that of the pod may come first)."""
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
