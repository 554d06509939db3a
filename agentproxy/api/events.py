"""``GET /events``: the status changes of agents as Server-Sent Events.

Each change is an event named ``status`` whose data is the agent's JSON plus
``"event"`` (``added``, ``modified`` or ``deleted``), with an id (see
:mod:`~agentproxy.backends.eventlog`). A client that reconnects with ``Last-Event-ID``
gets the events it missed that are still kept, or a ``resync`` event when they are not
(then it lists the agents again). An idle stream gets a comment line every
``heartbeat_interval`` seconds so that intermediaries keep it open and clients notice
a dead connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..backends.base import StatusEvent
from . import params
from .auth import principal_of
from .context import ApiContext
from .model import agent_json

MAX_QUEUED = 10_000
"""Events kept for a client that reads too slowly; beyond that its stream is ended."""

_CLOSE = object()
_OVERFLOW = object()

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def format_event(event: StatusEvent) -> bytes:
    """One SSE ``status`` event, with its id when it has one."""
    data = agent_json(event.agent)
    data["event"] = event.type
    head = f"id: {event.id}\n".encode() if event.id else b""
    return head + b"event: status\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def format_resync(last_event_id: str) -> bytes:
    """The ``resync`` event: the events after ``last_event_id`` cannot be replayed."""
    data = {"last_event_id": last_event_id[:200],
            "message": "the events after this id are no longer kept (or it is not an id of this stream): list the "
                       "agents again (GET /agents); changes from now on follow"}
    return b"event: resync\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class EventStreams:
    """The ``/events`` route and the streams it has open."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._queues: set[asyncio.Queue[Any]] = set()
        self._last: tuple[StatusEvent | None, bytes] = (None, b"")

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/events", self.handle, allow_head=False)]

    def _formatted(self, event: StatusEvent) -> bytes:
        """:func:`format_event` of ``event``, made once for all the streams that send it: they
        send the same events in the same order, so the last one made is the one asked for."""
        if self._last[0] is not event:
            self._last = (event, format_event(event))
        return self._last[1]

    async def _follow(self, response: web.StreamResponse, queue: asyncio.Queue[Any], cursor: Any,
                      shown: Callable[[StatusEvent], bool]) -> None:
        """Send the events of ``queue`` that the client is shown and has not seen (after ``cursor``)
        until the stream ends; a comment line after each ``heartbeat_interval`` without one."""
        heartbeat = self.ctx.heartbeat_interval
        ended = False
        while not ended:
            try:
                async with asyncio.timeout(heartbeat):  # no task per wait, as wait_for made
                    item = await queue.get()
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            # Whatever else is queued goes out in the same write: one system call for a burst.
            chunk = []
            while True:
                if item is _CLOSE or item is _OVERFLOW:
                    ended = True
                    break
                # Not replayed already, nor seen by the client on another replica:
                if (cursor is None or item.position is None or item.position > cursor) and shown(item):
                    chunk.append(self._formatted(item))
                if queue.empty():
                    break
                item = queue.get_nowait()
            if chunk:
                await response.write(b"".join(chunk))

    async def close_all(self, app: web.Application | None = None) -> None:
        """End every open stream (on shutdown: they would otherwise never finish)."""
        for queue in self._queues:
            queue.put_nowait(_CLOSE)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Stream status changes, of all agents the caller may see or of ``?session=S``."""
        session = params.query_session(request)
        principal = principal_of(request)
        # Listen before answering, so that no change after the answer is missed. The backend
        # hands each event over in its own turn; a client that falls MAX_QUEUED behind is cut off.
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def deliver(event: StatusEvent) -> None:
            size = queue.qsize()
            if size < MAX_QUEUED:
                queue.put_nowait(event)
            elif size == MAX_QUEUED:
                queue.put_nowait(_OVERFLOW)
        stop_listening = self.ctx.backend.listen(deliver, lambda: queue.put_nowait(_CLOSE))
        self._queues.add(queue)
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")

            def shown(event: StatusEvent) -> bool:
                state = event.agent
                return (session is None or state.session == session) and principal.can_see(state)

            # Replay what a reconnecting client missed; live events it has seen are skipped.
            cursor = None
            last_event_id = request.headers.get("Last-Event-ID")
            if last_event_id is not None:
                missed = self.ctx.backend.event_log.since(last_event_id)
                if missed is None:
                    await response.write(format_resync(last_event_id))
                else:
                    cursor = self.ctx.backend.event_log.parse(last_event_id)
                    for position, event in missed:
                        if shown(event):
                            await response.write(format_event(event))
                        cursor = position
            await self._follow(response, queue, cursor, shown)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._queues.discard(queue)
            stop_listening()
        return response
