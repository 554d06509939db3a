"""When agents are culled: the pure rules of idle culling (``agents.idle_timeout``) and of the
age limit (``agents.max_age``). No clock of its own and no I/O: the culler gives the time.

An agent is idle when it is ready and has not been active for ``idle_timeout``: no proxied
request (the proxies' traffic clock), no new message and not becoming ready within that
time. Before it is suspended its own API is asked once more: an agent that is working
(agentapi says ``running``) or wrote a message within that time is active after all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .backends.base import AgentState, AgentStatus
from .backends.suspension import AgentActivity

MAX_RESOLUTION = 60.0
"""The traffic clock is never coarser than a minute: an agent's annotation is written at most
once a minute however many requests it gets."""
MIN_RESOLUTION = 0.5


@dataclass(frozen=True)
class IdlePolicy:
    """The limits of ``agents.idle_timeout`` and ``agents.max_age`` (None: no limit), in seconds."""

    idle_timeout: float | None = None
    max_age: float | None = None

    @property
    def enabled(self) -> bool:
        """True when either limit is set: only then is there a culler and a traffic clock."""
        return bool(self.idle_timeout or self.max_age)

    @property
    def resolution(self) -> float:
        """How finely activity is recorded and how often the culler looks: a quarter of the
        shorter limit, between half a second and a minute. An agent is culled within about
        its limit plus twice this."""
        limits = [limit for limit in (self.idle_timeout, self.max_age) if limit]
        if not limits:
            return MAX_RESOLUTION
        return min(MAX_RESOLUTION, max(MIN_RESOLUTION, min(limits) / 4))

    def expired(self, state: AgentState, now: datetime) -> bool:
        """True when the agent is older than ``max_age`` and not already being deleted."""
        if not self.max_age or (state.status is AgentStatus.STOPPING and not state.suspended):
            return False
        return now - state.created_at >= timedelta(seconds=self.max_age)

    def idle(self, state: AgentState, now: datetime) -> bool:
        """True when the ready agent has not been active for ``idle_timeout``."""
        if not self.idle_timeout or state.status is not AgentStatus.READY or state.suspended:
            return False
        since = state.last_active or state.created_at
        return now - since >= timedelta(seconds=self.idle_timeout)

    def active_at(self, activity: AgentActivity, now: datetime) -> datetime | None:
        """For an idle agent, what its own API says: None when it may be suspended, else the time
        it was last active (now while it works; its last message when that is recent enough)."""
        if activity.status == "running":
            return now
        last = activity.last_message_at
        if last is not None and self.idle_timeout and now - last < timedelta(seconds=self.idle_timeout):
            return min(last, now)  # the agent's clock may run ahead of ours
        return None
