"""Fan-out of status events to any number of subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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
        self._listeners: dict[int, tuple[Callable[[Event], None], Callable[[], None]]] = {}
        self._next_listener = 0
        self._max_queue = max_queue

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every subscriber, and hand it to every listener."""
        for queue in self._queues:
            _put(queue, event)
        for deliver, _ in list(self._listeners.values()):
            deliver(event)

    def listen(self, deliver: Callable[[Event], None], ended: Callable[[], None]) -> Callable[[], None]:
        """Hand every event published from now on to ``deliver``, at once, in the publisher's turn
        (``ended`` when the hub closes), until the function returned is called. For a subscriber
        that keeps its own queue: no queue and no task of the hub's stand between them (a
        thousand-fold fan-out is a thousand calls, not a thousand task switches more)."""
        key, self._next_listener = self._next_listener, self._next_listener + 1
        self._listeners[key] = (deliver, ended)

        def stop() -> None:
            self._listeners.pop(key, None)
        return stop

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
        """End every subscription (after the events already queued for it), and every listening."""
        for queue in self._queues:
            _put(queue, _END)
        listeners, self._listeners = list(self._listeners.values()), {}
        for _, ended in listeners:
            ended()

    @property
    def subscribers(self) -> int:
        """How many subscriptions (and listeners) are open."""
        return len(self._queues) + len(self._listeners)


def _put(queue: asyncio.Queue[object], item: object) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
