"""The JSON form of an agent, as every route answers it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from ..backends.base import AgentState


def agent_url(session: str, agent_id: str) -> str:
    """The path under which the proxy serves an agent's own API."""
    return f"/sessions/{session}/agents/{agent_id}/api/"


def iso8601(moment: datetime) -> str:
    """An ISO 8601 timestamp; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def agent_json(state: AgentState) -> dict[str, Any]:
    """The agent as the API shows it."""
    spec = state.spec
    return {
        "id": spec.id,
        "session": spec.session,
        "agent": spec.type,
        "mode": state.mode,
        "status": state.status.value,
        "reason": state.reason,
        "message": state.message,
        "created_at": iso8601(state.created_at),
        "url": agent_url(spec.session, spec.id),
        "resources": dataclasses.asdict(spec.resources),
        "restarts": state.restarts,
        "details": _plain(state.details),
        "owner": spec.owner,
        "last_active_at": iso8601(state.last_active) if state.last_active is not None else None,
    }


def _plain(value: Any) -> Any:
    """``value`` with only JSON types (mode-specific details may hold paths, datetimes, ...)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return iso8601(value)
    return str(value)
