"""Notifications, pure: which changes of an agent are news, to whom, at most how often, as what.

Four kinds of news:

- ``waiting_input``: the agent's program waits for its user (a question, see
  :mod:`agentproxy.waiting`);
- ``ready``: the agent is ready and idle again with a message newer than the last one noted:
  it finished a turn of work (told by agentapi's status and the time of its last message);
- ``failed``: it will not become ready without help;
- ``deleted``: it is gone.

A subscription takes the kinds it names, of the agents of its ``owner``, ``hook`` or
``schedule`` (each one given narrows it). :class:`Debounce` lets at most one message per
subscription, agent and kind through in each window (``deleted`` always passes: it is the last);
what it held back is counted in the next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..backends.agent_state import AgentState, AgentStatus
from .config import Subscription

TAG = "agentproxy.trigger"


def subscribed(sub: Subscription, state: AgentState) -> bool:
    """True when ``sub`` is about the agent of ``state``."""
    tag = state.spec.tags.get(TAG)
    return ((sub.owner is None or state.spec.owner == sub.owner)
            and (sub.hook is None or tag == f"hook/{sub.hook}")
            and (sub.schedule is None or tag == f"schedule/{sub.schedule}"))


def status_news(previous: AgentState | None, event_type: str, state: AgentState) -> str | None:
    """The news of a status event: ``waiting_input``, ``failed``, ``deleted`` or None."""
    if event_type == "deleted":
        return "deleted"
    shown = state.shown_status
    before = previous.shown_status if previous is not None else None
    if shown is AgentStatus.WAITING_INPUT and before is not AgentStatus.WAITING_INPUT:
        return "waiting_input"
    if shown is AgentStatus.FAILED and before is not AgentStatus.FAILED:
        return "failed"
    return None


@dataclass
class TurnWatch:
    """The last message time seen of each agent: ``ready`` news when a newer one comes while
    agentapi is stable."""

    seen: dict[str, datetime | None] = field(default_factory=dict)

    def observe(self, agent_id: str, status: str | None, last_message_at: datetime | None, fresh: bool = True) -> bool:
        """True when this observation is a finished turn. The first one of an agent that is not
        ``fresh`` (it was there before the proxy started) only notes where it is: its last turn
        may be long over, and was told (or not) by the proxy that saw it."""
        if status != "stable" or last_message_at is None:
            return False
        known = agent_id in self.seen
        before = self.seen.get(agent_id)
        self.seen[agent_id] = last_message_at
        if not known:
            return fresh
        return before is None or last_message_at > before

    def forget(self, agent_id: str) -> None:
        """The agent is gone."""
        self.seen.pop(agent_id, None)


class Debounce:
    """At most one message per key in each ``window`` seconds; the others are counted."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._sent: dict[Any, float] = {}
        self._held: dict[Any, int] = {}
        self.held_total = 0
        """Messages held back so far (for ``/metrics`` and tests)."""

    def admit(self, key: Any, now: float) -> int | None:
        """None to hold this message back; else how many were held back before it."""
        last = self._sent.get(key)
        if last is not None and now - last < self.window:
            self._held[key] = self._held.get(key, 0) + 1
            self.held_total += 1
            return None
        self._sent[key] = now
        return self._held.pop(key, 0)

    def forget_before(self, now: float) -> None:
        """Drop windows that ended (bounded memory over many agents)."""
        for key in [k for k, at in self._sent.items() if now - at >= self.window and k not in self._held]:
            del self._sent[key]


_WHAT = {"waiting_input": "is waiting for input", "ready": "finished its turn and is ready",
         "failed": "failed", "deleted": "was deleted"}


def message(sub: Subscription, kind: str, agent: Mapping[str, Any], held: int, now: float) -> dict[str, Any]:
    """The JSON body of a notification, in the subscription's format."""
    at = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    if sub.format == "slack":
        text = f"Agent {agent['session']}/{agent['id']} {_WHAT[kind]}"
        detail = agent.get("question") if kind == "waiting_input" else agent.get("message")
        if detail:
            text += f": {str(detail)[:500]}"
        if held:
            text += f" ({held} earlier change{'s' if held > 1 else ''} not sent)"
        return {"text": text}
    return {"type": kind, "at": at, "subscription": sub.name, "held_back": held, "agent": dict(agent)}
