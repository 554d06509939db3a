"""Objects of one agent as the API server keeps them, shared by the k8s backend's tests."""

from __future__ import annotations

from typing import Any

READY_POD: dict[str, Any] = {"metadata": {"name": "agent-a1-0"}, "spec": {"nodeName": "node-1"},
             "status": {"phase": "Running", "podIP": "10.0.0.7",
                        "conditions": [{"type": "PodScheduled", "status": "True"},
                                       {"type": "Ready", "status": "True"}]}}
BOUND = {"metadata": {"name": "data-agent-a1-0"}, "status": {"phase": "Bound"}}


def stored(obj: dict[str, Any], uid: str = "uid-1", created: str = "2026-01-02T03:04:05Z") -> dict[str, Any]:
    """``obj`` as the server keeps it."""
    return {**obj, "metadata": {**obj["metadata"], "uid": uid, "creationTimestamp": created}}
