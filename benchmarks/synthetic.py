"""An imitation of the API server's answers to the k8s backend's lists and watches, with as many
agents as asked: the read path (cache, index, lists) measured at a scale the test machine's
control plane cannot hold in a benchmark's time.

The objects are each agent's four objects as the templates render them, with what the API
server adds to what it stores (uid, resourceVersion, generation, creationTimestamp,
``managedFields`` of the applying field manager, the defaults of a StatefulSet and its pod
template, a status), and a ready pod as the StatefulSet controller and kwok make it. They are
shaped like the real ones, not copied from a cluster: an imitation, which is what
``benchmarks.list_cache`` says it measures.

:class:`SyntheticApi` stands in for the API server under the real
:class:`~agentproxy.backends.k8s.client.Client` (reached through its :class:`SyntheticTransport`):
lists answer the objects as JSON bytes (parsed by the client as the real answers are), watches
stay open and silent, a dry-run create answers as the server does, and every other write is
recorded and answered (a read path that writes is a finding, not a failure here).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from agentproxy import naming
from agentproxy.backends.k8s.plan import as_applied
from agentproxy.render import render_agent
from agentproxy.settings import Settings
from agentproxy.spec import build_spec

CREATED = "2026-01-02T03:04:05Z"
FIELD_MANAGER = "agentproxy"
NODE = "kwok-node-0"


def fields_v1(value: Any) -> dict[str, Any]:
    """The ``fieldsV1`` of the fields of ``value`` (a manager's managedFields entry): a map
    entry per key, list items by their ``name`` (as the server keys containers, env, ...)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out[f"f:{key}"] = fields_v1(item)
        elif isinstance(item, list) and item and all(isinstance(i, dict) and "name" in i for i in item):
            out[f"f:{key}"] = {f'k:{{"name":"{i["name"]}"}}': {".": {}, **fields_v1(i)} for i in item}
        else:
            out[f"f:{key}"] = {}
    return out


def _stored(obj: dict[str, Any], uid: str, version: int, fields: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (rendered for this agent alone: changed in place) as the server stores it after a
    server-side apply of ``fields`` by agentproxy's field manager."""
    meta = obj["metadata"]
    meta.update(uid=uid, resourceVersion=str(version), creationTimestamp=CREATED,
                managedFields=[{"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": obj["apiVersion"],
                                "time": CREATED, "fieldsType": "FieldsV1", "fieldsV1": fields}])
    return obj


def _pod_template_defaults(spec: dict[str, Any]) -> None:
    """The defaults the server writes into a pod spec (StatefulSet template and pod alike)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in spec.get("containers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("imagePullPolicy", "IfNotPresent")


_FIELDS: dict[str, dict[str, Any]] = {}
"""The ``fieldsV1`` of each kind as applied: the same for every agent (list items are keyed by
names every agent shares), so made once."""


def _fields(kind: str, applied: dict[str, Any]) -> dict[str, Any]:
    if kind not in _FIELDS:
        _FIELDS[kind] = fields_v1({k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "status")})
    return _FIELDS[kind]


def agent_objects(settings: Settings, session: str, agent_id: str, first_version: int) -> dict[str, dict[str, Any]]:
    """The objects of a ready agent as the API server would list them, resourceVersions from
    ``first_version`` on: the StatefulSet first, and the objects it owns applied with their
    owner reference, as a create applies them."""
    spec = build_spec(settings, session, agent_id, "echo")
    rendered = {o["kind"]: copy.deepcopy(o) for o in render_agent(settings, spec)}
    out: dict[str, dict[str, Any]] = {}
    raw = rendered.pop("StatefulSet")
    sts = _stored(raw, f"uid-statefulset-{agent_id}", first_version, _fields("StatefulSet", raw))
    sts["metadata"]["generation"] = 1
    sts_spec = sts["spec"]
    sts_spec.setdefault("revisionHistoryLimit", 10)
    sts_spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    _pod_template_defaults(sts_spec["template"]["spec"])
    revision = f"agent-{agent_id}-5d8f7c9b6"
    sts["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentReplicas": 1,
                     "updatedReplicas": 1, "availableReplicas": 1, "currentRevision": revision,
                     "updateRevision": revision, "collisionCount": 0}
    out["StatefulSet"] = sts
    version = first_version + 1
    for kind, obj in rendered.items():
        applied = as_applied(obj, sts)
        stored = _stored(applied, f"uid-{kind.lower()}-{agent_id}", version, _fields(kind, applied))
        version += 1
        if kind == "PersistentVolumeClaim":
            stored["spec"].setdefault("volumeMode", "Filesystem")
            stored["spec"]["volumeName"] = f"pvc-{agent_id}"
            stored["status"] = {"phase": "Bound", "accessModes": stored["spec"].get("accessModes", []),
                                "capacity": {"storage": stored["spec"]["resources"]["requests"]["storage"]}}
        elif kind == "Service":
            stored["spec"].update(clusterIP="None", clusterIPs=["None"], ipFamilies=["IPv4"],
                                  ipFamilyPolicy="SingleStack", sessionAffinity="None",
                                  internalTrafficPolicy="Cluster")
            stored["status"] = {"loadBalancer": {}}
        out[kind] = stored
    out["Pod"] = _pod(sts, agent_id, version)
    return out


def _pod(statefulset: dict[str, Any], agent_id: str, version: int) -> dict[str, Any]:
    """The StatefulSet's pod, ready on a kwok node."""
    template = json.loads(json.dumps(statefulset["spec"]["template"]))
    name = naming.pod_name(agent_id)
    labels = {**template["metadata"].get("labels", {}), "apps.kubernetes.io/pod-index": "0",
              "controller-revision-hash": f"agent-{agent_id}-5d8f7c9b6",
              "statefulset.kubernetes.io/pod-name": name}
    spec = template["spec"]
    _pod_template_defaults(spec)
    spec.update(nodeName=NODE, hostname=name, subdomain=statefulset["spec"].get("serviceName"),
                serviceAccountName="default", priority=0, enableServiceLinks=False,
                tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                              "tolerationSeconds": 300}])
    conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    containers = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "containerID": f"kwok://{name}",
                   "ready": True, "started": True, "restartCount": 0,
                   "state": {"running": {"startedAt": CREATED}}} for c in spec.get("containers", [])]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": statefulset["metadata"].get("namespace"),
                        "labels": labels, "annotations": template["metadata"].get("annotations", {}),
                        "generateName": f"agent-{agent_id}-", "uid": f"uid-pod-{agent_id}",
                        "resourceVersion": str(version), "creationTimestamp": CREATED,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": statefulset["metadata"]["name"], "uid": f"uid-statefulset-{agent_id}",
                                             "controller": True, "blockOwnerDeletion": True}]},
           "spec": spec,
           "status": {"phase": "Running", "conditions": conditions, "hostIP": "198.18.0.10",
                      "hostIPs": [{"ip": "198.18.0.10"}], "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
                      "qosClass": "Burstable", "startTime": CREATED, "containerStatuses": containers}}
    pod["metadata"]["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": CREATED,
         "fieldsType": "FieldsV1", "fieldsV1": _fields("Pod", {"metadata": pod["metadata"], "spec": spec})},
        {"manager": "kwok", "operation": "Update", "apiVersion": "v1", "time": CREATED, "subresource": "status",
         "fieldsType": "FieldsV1", "fieldsV1": _fields("Pod/status", {"status": pod["status"]})}]
    return pod


def sessions(count: int, small: str, per_session: int) -> Iterator[tuple[str, str]]:
    """(session, agent id) of ``count`` agents: two in ``small``, the others ``per_session`` to a session."""
    yield small, "small-0"
    yield small, "small-1"
    for i in range(count - 2):
        yield f"s{i // per_session}", f"a{i}"


class SyntheticTransport:
    """The imitation as the client reaches it (:class:`~agentproxy.backends.k8s.transport.Transport`):
    its calls answered by :meth:`SyntheticApi.answer`; each watch accepted, recorded in
    ``api.watches``, and silent until it is closed, but for the events :meth:`SyntheticApi.push` sends."""

    def __init__(self, api: SyntheticApi) -> None:
        self.api = api

    async def request(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str],
                      body: bytes | None, timeout: float) -> tuple[int, bytes]:
        return await self.api.answer(method, path, dict(params), body)

    @asynccontextmanager
    async def open(self, path: str, params: Mapping[str, str], headers: Mapping[str, str], *,
                   connect_timeout: float, read_timeout: float) -> AsyncIterator[_FedWatch]:
        plural = path.rsplit("/", 1)[-1]
        self.api.watches.append(plural)
        feed: asyncio.Queue[bytes] = asyncio.Queue()
        self.api.feeds[plural] = feed
        try:
            yield _FedWatch(feed)
        finally:
            if self.api.feeds.get(plural) is feed:
                del self.api.feeds[plural]

    async def close(self) -> None:
        pass


class _FedWatch:
    """A watch that sends the lines put in its feed, and nothing else."""

    status = 200

    def __init__(self, feed: asyncio.Queue[bytes]) -> None:
        self.feed = feed

    async def error_body(self) -> bytes:
        return b""  # pragma: no cover - never an error

    async def lines(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.feed.get()


class SyntheticApi:
    """What :class:`~agentproxy.backends.k8s.client.Client` asks of the API server: lists of the
    synthetic objects, silent watches, and writes recorded."""

    def __init__(self, namespace: str, objects: dict[str, list[dict[str, Any]]], resource_version: int) -> None:
        self.namespace = namespace
        self.gates: dict[str, asyncio.Event] = {}
        """Lists held until their event is set, by plural (a slow list of one kind)."""
        self.resource_version = resource_version
        self.bodies = {plural: json.dumps({"apiVersion": "v1", "kind": "List", "items": items,
                                           "metadata": {"resourceVersion": str(resource_version)}}).encode()
                       for plural, items in objects.items()}
        """Each list's body as the wire carries it (parsed anew by the client at every list)."""
        self.lists: list[str] = []
        self.watches: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self.reads: list[str] = []
        """Objects asked for one by one that the imitation does not hold (answered 404)."""
        self.feeds: dict[str, asyncio.Queue[bytes]] = {}
        """The open watch of each plural, fed by :meth:`push`."""
        self.transport = SyntheticTransport(self)
        """How :class:`~agentproxy.backends.k8s.client.Client` reaches the imitation (its ``transport``)."""

    def push(self, plural: str, event_type: str, obj: dict[str, Any]) -> bool:
        """Send a watch event (``MODIFIED`` and the object, say) on the open watch of ``plural``,
        the object at the imitation's next resourceVersion; False when no such watch is open."""
        feed = self.feeds.get(plural)
        if feed is None:
            return False
        self.resource_version += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.resource_version)}}
        feed.put_nowait(json.dumps({"type": event_type, "object": obj}).encode())
        return True

    async def answer(self, method: str, path: str, params: dict[str, str], content: bytes | None
                     ) -> tuple[int, bytes]:
        """The status and body of the answer to a call of ``path`` (``/api/v1/...``)."""
        plural = path.rsplit("/", 1)[-1]
        url = path.lstrip("/").partition("/")[2]  # as the writes and reads are recorded: without /api or /apis
        if method == "GET" and "fieldSelector" in params:  # the Events
            self.lists.append(f"events?{params['fieldSelector']}")
            return _answer(200, {"items": [], "metadata": {"resourceVersion": str(self.resource_version)}})
        if method == "GET" and params.get("limit") == "1":  # the health check's list of one claim
            return _answer(200, {"items": [], "metadata": {"resourceVersion": str(self.resource_version)}})
        if method == "GET" and plural in self.bodies:  # a whole list in its first page, as a server may answer
            self.lists.append(plural)
            if plural in self.gates:
                await self.gates[plural].wait()
            return 200, self.bodies[plural]
        if method == "POST" and params.get("dryRun") == "All":  # the namespace check
            return _answer(201, json.loads(content or b"{}"))
        if method == "GET":  # one object the imitation does not hold (the hooks' ConfigMap, say)
            self.reads.append(url)
            return _answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": f"{path} not found"})
        self.writes.append((method, url))
        return _answer(200, json.loads(content or b"{}"))


def _answer(status: int, body: Any) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


def synthetic_namespace(settings: Settings, count: int, small: str = "small", per_session: int = 4,
                        ) -> SyntheticApi:
    """A :class:`SyntheticApi` holding ``count`` ready agents of ``settings``' namespace."""
    plural = {"ConfigMap": "configmaps", "Service": "services", "PersistentVolumeClaim": "persistentvolumeclaims",
              "StatefulSet": "statefulsets", "Pod": "pods"}
    objects: dict[str, list[dict[str, Any]]] = {p: [] for p in plural.values()}
    version = 1000
    for session, agent_id in sessions(count, small, per_session):
        for kind, obj in agent_objects(settings, session, agent_id, version).items():
            objects[plural[kind]].append(obj)
        version += 10
    return SyntheticApi(settings.k8s_mode.namespace, objects, version)
