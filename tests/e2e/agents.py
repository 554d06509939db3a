"""Helpers shared by the tests of the k8s backend."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus, NotFound
from agentproxy.settings import load_settings

from .kube import wait_for

SESSION = "team-a"


def settings_for(namespace: str, *overrides: str):
    return load_settings(overrides=[f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip", *overrides],
                         environ={}).settings


async def until_status(backend, agent_id: str, status: AgentStatus, session: str = SESSION):
    async def check():
        try:
            state = await backend.get(session, agent_id)
        except NotFound:
            return None
        return state if state.status == status else None
    return await wait_for(check, f"agent {agent_id} to be {status.value}")
