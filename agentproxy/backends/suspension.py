"""What a suspended agent is, in every mode: why and when it was suspended, how that is
written down (a StatefulSet annotation, a state-file record), and what the agent says of it.

A suspended agent keeps its data (work directory or volume, conversation included) and
nothing of it runs. It resumes through the API, on its next proxied request, or when it
is created again with the same spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

API = "api"
"""Suspended or resumed by a request to the API (``.../suspend``, ``.../resume``, a create)."""
IDLE = "idle"
"""Suspended by idle culling (``agents.idle_timeout``)."""
REQUEST = "request"
"""Resumed by a proxied request to the suspended agent."""

SUSPEND_CAUSES = (API, IDLE)
RESUME_CAUSES = (API, REQUEST)

SUSPENDED_REASON = "Suspended"
"""The reason of a suspended agent."""
SUSPENDING_REASON = "Suspending"
"""The reason of an agent that is being suspended (status ``stopping``)."""

_WHY = {API: "suspended through the API", IDLE: "suspended after being idle"}


def utc_now() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """``moment`` as an RFC 3339 UTC timestamp with seconds (``2026-01-02T03:04:05Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A timestamp written by :func:`timestamp` (or any ISO 8601 time), None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Suspension:
    """Why (``cause``) and when (``at``) an agent was suspended."""

    cause: str
    at: datetime

    @classmethod
    def now(cls, cause: str) -> Suspension:
        """A suspension beginning now, to the second."""
        return cls(cause, utc_now().replace(microsecond=0))

    def to_dict(self) -> dict[str, str]:
        """The form kept in a state file."""
        return {"cause": self.cause, "at": timestamp(self.at)}

    def to_json(self) -> str:
        """The form kept in an annotation."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suspension:
        """Read :meth:`to_dict`'s form; what cannot be read becomes cause ``unknown`` at the epoch
        (the agent stays suspended: being suspended is what matters)."""
        cause = data.get("cause")
        at = parse_time(data.get("at"))
        return cls(cause if isinstance(cause, str) and cause else "unknown",
                   at or datetime.fromtimestamp(0, UTC))

    @classmethod
    def from_json(cls, text: str) -> Suspension:
        """Read :meth:`to_json`'s form (leniently, as :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        return cls.from_dict(data if isinstance(data, dict) else {})

    def message(self) -> str:
        """What a suspended agent's status message says."""
        why = _WHY.get(self.cause, "suspended")
        return (f"{why} at {timestamp(self.at)}; its data and conversation are kept, and a resume or "
                "a request to its API starts it again")


@dataclass(frozen=True)
class AgentActivity:
    """What an agent's own API tells of its activity: agentapi's status (``running`` while the
    agent works, ``stable`` when it waits; None when unknown) and the time of its last message."""

    status: str | None = None
    last_message_at: datetime | None = None
