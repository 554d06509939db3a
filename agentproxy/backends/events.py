"""Fan-out of status events to any number of subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

Event = TypeVar("Event")

_END = object()


class EventHub(Generic[Event]):
    """Every subscriber gets every event published after it subscribed. A
    subscriber that falls ``max_queue`` events behind loses the oldest ones
    rather than slowing the publisher down. A subscription begins when its
    iteration does, and ends when the subscriber stops or the hub is closed."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._queues: set[asyncio.Queue[object]] = set()
        self._max_queue = max_queue

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every subscriber."""
        for queue in self._queues:
            _put(queue, event)

    async def subscribe(self) -> AsyncIterator[Event]:
        """The events published from now on."""
        queue: asyncio.Queue[object] = asyncio.Queue(self._max_queue)
        self._queues.add(queue)
        try:
            while (item := await queue.get()) is not _END:
                yield item  # type: ignore[misc]  # every item but _END is an Event
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every subscription (after the events already queued for it)."""
        for queue in self._queues:
            _put(queue, _END)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._queues)


def _put(queue: asyncio.Queue[object], item: object) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
