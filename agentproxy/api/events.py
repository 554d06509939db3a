"""``GET /events``: the status changes of agents as Server-Sent Events.

Each change is an event named ``status`` whose data is the agent's JSON plus
``"event"`` (``added``, ``modified`` or ``deleted``). An idle stream gets a
comment line every ``heartbeat_interval`` seconds so that intermediaries keep it
open and clients notice a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..backends.base import StatusEvent
from . import params
from .auth import principal_of
from .context import ApiContext
from .model import agent_json

log = logging.getLogger("agentproxy.api")

MAX_QUEUED = 10_000
"""Events kept for a client that reads too slowly; beyond that its stream is ended."""

_CLOSE = object()
_OVERFLOW = object()

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def format_event(event: StatusEvent) -> bytes:
    """One SSE ``status`` event."""
    data = agent_json(event.agent)
    data["event"] = event.type
    return b"event: status\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class EventStreams:
    """The ``/events`` route and the streams it has open."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._queues: set[asyncio.Queue[Any]] = set()

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/events", self.handle, allow_head=False)]

    async def close_all(self, app: web.Application | None = None) -> None:
        """End every open stream (on shutdown: they would otherwise never finish)."""
        for queue in self._queues:
            queue.put_nowait(_CLOSE)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Stream status changes, of all agents the caller may see or of ``?session=S``."""
        session = params.query_session(request)
        principal = principal_of(request)
        # Subscribe before answering, so that no change after the answer is missed.
        events = self.ctx.backend.events()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.create_task(_pump(events, queue))
        self._queues.add(queue)
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            await asyncio.sleep(0)  # let the pump start iterating (some backends subscribe lazily)
            await response.write(b": connected\n\n")
            heartbeat = self.ctx.heartbeat_interval
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if item is _CLOSE or item is _OVERFLOW:
                    break
                if isinstance(item, BaseException):
                    log.warning("event stream of the backend failed: %s", item)
                    break
                state = item.agent
                if (session is None or state.session == session) and principal.can_see(state):
                    await response.write(format_event(item))
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._queues.discard(queue)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return response


async def _pump(events: AsyncIterator[StatusEvent], queue: asyncio.Queue[Any]) -> None:
    """Move the backend's events into ``queue`` (a task, so that waiting can time out safely)."""
    try:
        async for event in events:
            if queue.qsize() >= MAX_QUEUED:
                queue.put_nowait(_OVERFLOW)
                return
            queue.put_nowait(event)
        queue.put_nowait(_CLOSE)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported by the stream, which then ends
        queue.put_nowait(exc)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
