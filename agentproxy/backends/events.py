"""Fan-out of status events to any number of subscribers."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from .base import StatusEvent


class EventHub:
    """Every subscriber gets every event published after it subscribed. A
    subscriber that falls ``max_queue`` events behind loses the oldest ones
    rather than slowing the publisher down."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._queues: set[asyncio.Queue[StatusEvent]] = set()
        self._max_queue = max_queue

    def publish(self, event: StatusEvent) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[StatusEvent]:
        queue: asyncio.Queue[StatusEvent] = asyncio.Queue(self._max_queue)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
