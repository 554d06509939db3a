"""A proxied request to an agent that is not ready: a suspended agent resumes on it.

The proxy calls :meth:`Waker.wake` only for an agent that is not ready, so a ready agent's
requests never come here. Without ``agents.resume_wait`` the request is answered 503
with ``Retry-After`` at once while the agent resumes; with it, the request waits up to
that long for the agent (suspended, resuming or starting) to be ready and is then forwarded.
A resume on a request stays within the agent's owner's quotas, as ``POST .../resume`` does:
over one, the request is answered 429 naming the quota and the agent stays suspended.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..backends.base import AgentState, AgentStatus, Backend
from ..backends.suspension import REQUEST
from .errors import ApiError

RETRY_AFTER = "2"
"""Seconds a client is asked to wait before trying an agent that is not ready again."""

_ON_ITS_WAY = (AgentStatus.PENDING, AgentStatus.STARTING)


class Waker:
    """Resumes suspended agents on their first request, and waits for them when asked to."""

    def __init__(self, backend: Backend, resume_wait: float = 0.0, quotas: Any = None) -> None:
        self.backend = backend
        self.resume_wait = resume_wait
        self.quotas = quotas
        """The quotas a resume must stay within (its owner's), as for ``POST .../resume``."""

    async def wake(self, state: AgentState) -> AgentState:
        """The agent once ready to be forwarded to, or :class:`ApiError` 503 with ``Retry-After``."""
        backend = self.backend
        resumed = state.suspended
        if resumed:
            # Shielded: a client that goes away does not call the resume off half-way. Within
            # the owner's quotas: a request to a suspended agent is no way around them (429).
            admit = self.quotas.admit_resume(state) if self.quotas is not None else contextlib.nullcontext()
            async with admit:
                state = await asyncio.shield(backend.resume(state.session, state.id, cause=REQUEST))
        if self.resume_wait > 0 and (resumed or backend.resuming(state.id) or state.status in _ON_ITS_WAY):
            state = await backend.wait_ready(state.session, state.id, self.resume_wait)
        if state.status is AgentStatus.READY and state.upstream:
            return state
        if resumed or backend.resuming(state.id):
            raise ApiError(503, f"agent {state.id!r} was suspended and is resuming (status {state.status.value}); "
                                f"try again in {RETRY_AFTER} s", code="agent_resuming",
                           headers={"Retry-After": RETRY_AFTER})
        raise ApiError(503, f"agent {state.id!r} is not ready (status {state.status.value})",
                       code="agent_not_ready", headers={"Retry-After": RETRY_AFTER})
