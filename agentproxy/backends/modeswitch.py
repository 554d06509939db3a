"""Agents of the other mode, found when ``serve`` starts.

Switching modes is: stop the proxy, change ``k8s_mode.enabled``, start it. Agents
the old mode left running keep running, out of the new mode's sight: local
agents are processes recorded in ``local_mode.data_dir``'s state file, k8s
agents are objects in ``k8s_mode.namespace``. At start-up each mode looks for
the other's; ``server.other_mode_agents`` decides whether that stops the start
(``refuse``) or is a warning (``warn``). Nothing is ever deleted here.

:func:`verdict` is the pure part (what to say, whether to refuse); the finders
do the reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import naming
from ..settings import Settings

log = logging.getLogger(__name__)

K8S_TIMEOUT = 10.0
"""Seconds a local-mode start-up spends looking into the cluster, at most."""
SHOWN = 5
"""Agents named in the message; the rest are counted."""


class OtherModeAgents(Exception):
    """Agents of the other mode run and ``server.other_mode_agents`` is ``refuse``."""


@dataclass(frozen=True)
class Leftovers:
    """Agents of ``mode`` found ``where``, as ``session/id``."""

    mode: str
    where: str
    agents: tuple[str, ...]


def _names(agents: tuple[str, ...]) -> str:
    shown = ", ".join(agents[:SHOWN])
    return shown + (f" and {len(agents) - SHOWN} more" if len(agents) > SHOWN else "")


def verdict(leftovers: Leftovers, policy: str) -> tuple[str, bool]:
    """(message, refuse) for agents of the other mode: which ones, where, and what to do."""
    count = len(leftovers.agents)
    agents = f"{count} agent{'s' if count != 1 else ''} ({_names(leftovers.agents)})"
    if leftovers.mode == "local":
        found = f"local mode left {agents} running in {leftovers.where}"
        unseen = "this k8s-mode proxy does not see or supervise them"
        todo = ("delete them with a local-mode proxy on that data_dir (k8s_mode.enabled=false; "
                "`agentproxy agents rm SESSION ID`)")
    else:
        found = f"k8s mode has {agents} in {leftovers.where}"
        unseen = "this local-mode proxy does not see them"
        todo = ("delete them with a k8s-mode proxy on that namespace (k8s_mode.enabled=true; "
                "`agentproxy agents rm SESSION ID`, or `agentproxy delete`)")
    if policy == "warn":
        return f"{found}; {unseen}. To switch modes, {todo}. Starting anyway (server.other_mode_agents=warn).", False
    return (f"{found}; {unseen}. To switch modes, {todo}; to run both, set "
            "server.other_mode_agents=warn. Nothing was deleted.", True)


def _live(record: dict[str, Any]) -> bool:
    """Whether a state file record names a process that still runs (pid, start time, command line)."""
    import psutil

    from .local.process.identity import Identity, same_process

    if record.get("status") == "failed" or not record.get("process"):
        return False
    try:
        identity = Identity.from_dict(record["process"])
        return same_process(psutil.Process(identity.pid), identity.started, identity.cmdline)
    except (ValueError, psutil.Error):
        return False


def _session(record: dict[str, Any]) -> str:
    from ..spec import AgentSpec

    try:
        return AgentSpec.from_json(record["spec"]).session
    except (KeyError, TypeError, ValueError):
        return "?"


def find_local(settings: Settings) -> Leftovers | None:
    """Live agents of ``local_mode.data_dir``'s state file (read only: a damaged file is
    left for the local backend to deal with)."""
    data_dir = Path(os.path.expanduser(settings.local_mode.data_dir)).absolute()
    try:
        data = json.loads((data_dir / "state.json").read_text(encoding="utf-8"))
        records = data["agents"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    agents = []
    for agent_id, record in sorted(records.items()) if isinstance(records, dict) else ():
        if isinstance(record, dict) and _live(record):
            agents.append(f"{_session(record)}/{agent_id}")
    return Leftovers("local", f"local_mode.data_dir={data_dir}", tuple(agents)) if agents else None


async def find_k8s(settings: Settings) -> Leftovers | None:
    """agentproxy's agents in ``k8s_mode.namespace``, when there are credentials for a cluster."""
    from .k8s.credentials import kubeconfig_present, service_account_dir

    k8s = settings.k8s_mode
    if not kubeconfig_present(k8s.kubeconfig) and service_account_dir() is None:
        return None  # no cluster to look into (and no Kubernetes client to load)
    from .k8s.client import Client
    from .k8s.kinds import CONFIGMAP, STATEFULSET
    client = await Client.connect(k8s.kubeconfig, k8s.context)
    agents = set()
    try:
        for kind in (CONFIGMAP, STATEFULSET):  # the claim, and what runs
            listed = await client.request("GET", kind.collection(k8s.namespace), verb="list", resource=kind.plural,
                                          params={"labelSelector": naming.MANAGED_SELECTOR})
            for obj in listed.get("items") or []:
                labels = (obj.get("metadata") or {}).get("labels") or {}
                if labels.get(naming.LABEL_AGENT_ID):
                    agents.add(f"{labels.get(naming.LABEL_SESSION, '?')}/{labels[naming.LABEL_AGENT_ID]}")
    finally:
        await client.close()  # its connections, also when the lookup is cut short
    where = f"namespace {k8s.namespace} of {client.api.auth.server}"
    return Leftovers("k8s", where, tuple(sorted(agents))) if agents else None


async def check(settings: Settings, mode: str) -> None:
    """Look for agents of the other mode than ``mode``; log a warning, or raise
    :class:`OtherModeAgents` when ``server.other_mode_agents`` is ``refuse``. A cluster
    that cannot be asked is a warning, never a refusal."""
    from .base import BackendError

    if mode == "k8s":
        leftovers = find_local(settings)
    else:
        try:
            leftovers = await asyncio.wait_for(find_k8s(settings), K8S_TIMEOUT)
        except (TimeoutError, BackendError) as exc:
            reason = getattr(exc, "message", None) or f"no answer within {K8S_TIMEOUT:g} s"
            log.warning("could not look for k8s-mode agents in namespace %s: %s",
                        settings.k8s_mode.namespace, reason)
            return
    if leftovers is None:
        return
    message, refuse = verdict(leftovers, settings.server.other_mode_agents)
    if refuse:
        raise OtherModeAgents(message)
    log.warning("%s", message)
