"""``GET /sessions/{session}/agents/{agent}/progress``: an agent's start, step by step, as
Server-Sent Events.

The steps already reached come first, then each one as it is reached; the stream ends after
the last step of the start (``ready``, ``failed`` with the agent's reason, or ``stopped``).
An agent that is not starting shows its last start (and the stream ends at once); one of which
this proxy knows no start waits for the next (a resume). Each event is named ``step``, its id
is the step's position in the start, and its data is the step's JSON with the agent's id and
session and the kind of start (``start``, ``resume`` or ``restart``). Owner-scoped as every
agent route; an idle stream gets a comment line every ``heartbeat_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from ..backends.progress import StartProgress, Step
from . import params
from .auth import principal_of
from .context import ApiContext
from .events import SSE_HEADERS


def format_step(record: StartProgress, index: int, step: Step, session: str) -> bytes:
    """One SSE ``step`` event."""
    data = {"id": record.agent_id, "session": session, "kind": record.kind, "index": index, **step.to_json()}
    return (f"id: {index}\nevent: step\ndata: ".encode() + json.dumps(data, separators=(",", ":")).encode()
            + b"\n\n")


class ProgressStreams:
    """The progress route and the streams it has open."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._closing = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/sessions/{session}/agents/{agent}/progress", self.handle, allow_head=False)]

    async def close_all(self, app: web.Application | None = None) -> None:
        """End every open stream (on shutdown)."""
        self._closing.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Replay the agent's start so far, then follow it until it ends."""
        session, agent_id = params.path_agent(request)
        principal = principal_of(request)
        await self.ctx.visible_agent(principal, session, agent_id)
        backend = self.ctx.backend
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        try:
            await response.write(b": connected\n\n")
            record, sent = backend.progress.get(agent_id), 0
            while not self._closing.is_set():
                if record is None:
                    record = backend.progress.get(agent_id)
                if record is not None:
                    # Steps reached while a write was under way are sent too (never skipped).
                    while sent < len(record.steps):
                        await response.write(format_step(record, sent, record.steps[sent], session))
                        sent += 1
                    if record.ended:
                        break
                if not await self._wait(agent_id, self._moved_on(agent_id, record, sent)):
                    state = backend.peek(session, agent_id)
                    if state is None or not principal.can_see(state):
                        break  # gone without a start this proxy knew of
                    await response.write(b": heartbeat\n\n")
        except ConnectionResetError:
            pass  # the client went away
        return response

    def _moved_on(self, agent_id: str, record: StartProgress | None, sent: int) -> Callable[[], bool]:
        """Whether the agent's start has moved on from what the stream sent: a start where
        there was none, or steps past the ``sent`` ones."""
        if record is None:
            return lambda: self.ctx.backend.progress.get(agent_id) is not None
        return lambda: len(record.steps) > sent

    async def _wait(self, agent_id: str, moved_on: Callable[[], bool]) -> bool:
        """True at the next change of the agent's progress, False after the heartbeat interval
        (or at shutdown)."""
        # The wait task runs a moment after the stream's look at the steps: a step reached in
        # between is caught by moved_on, once the wait is registered.
        change = asyncio.ensure_future(self.ctx.backend.next_progress(agent_id, self.ctx.heartbeat_interval,
                                                                      unless=moved_on))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({change, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not change.done():
                change.cancel()
        return change.done() and not change.cancelled() and change.result()
