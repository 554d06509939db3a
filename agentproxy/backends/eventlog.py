"""The ids of status events and the window of recent ones a reconnecting client can be given.

Every status event a backend publishes gets a :class:`Position` and keeps its place in an
:class:`EventLog` of the last ``capacity`` events. A client of ``GET /events`` that comes back
with the id of the last event it saw (``Last-Event-ID``) gets every later one that is still in
the window; one whose id is older than the window, or not of this stream, is told to list the
agents again (a resync).

Two kinds of ids:

- **Sequence** (local mode, one proxy): ``EPOCH-N``, numbered from 1 when the proxy starts;
  ``EPOCH`` is chosen at random then, so an id of an earlier run of the proxy is not taken for
  one of this run.
- **Resource version** (k8s mode, any number of replicas): the ``resourceVersion`` of the object
  change in which the proxy saw the agent change (``12345``), or, for a change that came with
  no newer one (an Event, a first message), the last one with a suffix (``12345.2``). Every
  replica watches the same object changes, so a change gets the same id from each one, and a
  client may reconnect to another replica; ids are compared as numbers. Only when two
  replicas saw one change through different watches in a different order (a pod and its claim
  changing at once) may the ids of that change differ; the window of a replica begins with
  its own start, and an id before it gets a resync.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Event = TypeVar("Event")

DEFAULT_CAPACITY = 10_000
"""Events kept for replay (about a minute of a thousand agents starting at once)."""


@dataclass(frozen=True, order=True)
class Position:
    """Where an event is in its stream (compared as ``(major, minor)``)."""

    major: int
    minor: int = 0


class EventLog(Generic[Event]):
    """The last ``capacity`` events with their positions. ``epoch`` (sequence ids) or None
    (resource-version ids, see the module's text)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, epoch: str | None = "") -> None:
        self.capacity = capacity
        self.epoch = secrets.token_hex(4) if epoch == "" else epoch
        self._events: deque[tuple[Position, Event]] = deque()
        self._last: Position | None = None
        # Events at or before the floor are not known here: a cursor below it cannot be served.
        self._floor: Position | None = Position(0) if self.epoch is not None else None

    def next_position(self, hint: int | None = None) -> Position:
        """The position of the next event (in resource-version streams, ``hint``: the
        resourceVersion of the change it came with, when newer than the last)."""
        last = self._last
        if self.epoch is not None:
            position = Position(last.major + 1 if last else 1)
        elif hint is not None and (last is None or hint > last.major):
            position = Position(hint)
        else:
            position = Position(last.major, last.minor + 1) if last else Position(0, 1)
        self._last = position
        return position

    def keep(self, position: Position, event: Event) -> None:
        """Keep ``event`` (of :meth:`next_position`) for replay, dropping the oldest beyond capacity."""
        if self._floor is None:
            self._floor = position  # a replica knows nothing from before its first event
        self._events.append((position, event))
        while len(self._events) > self.capacity:
            dropped = self._events.popleft()[0]
            if dropped > self._floor:
                self._floor = dropped

    def known_from(self, resource_version: int) -> None:
        """Every change after ``resource_version`` is known here from now on (a replica's watches
        began there): a cursor at or after it can be served."""
        position = Position(resource_version)
        if self._floor is None or position > self._floor:
            self._floor = position
        if self._last is None or position > self._last:
            self._last = position

    def id_of(self, position: Position) -> str:
        """The text of an event id."""
        text = str(position.major) if position.minor == 0 else f"{position.major}.{position.minor}"
        return f"{self.epoch}-{text}" if self.epoch is not None else text

    def parse(self, event_id: str) -> Position | None:
        """The position of an id of this stream, None when it is not one."""
        text = event_id.strip()
        if self.epoch is not None:
            prefix = f"{self.epoch}-"
            if not text.startswith(prefix):
                return None
            text = text[len(prefix):]
        major, _, minor = text.partition(".")
        if not major.isdigit() or (minor and not minor.isdigit()) or len(text) > 40:
            return None
        return Position(int(major), int(minor or 0))

    def since(self, event_id: str) -> list[tuple[Position, Event]] | None:
        """Every kept event after the one of ``event_id``, or None when that cannot be told (an
        id of another stream, or older than the window): the client must list again."""
        cursor = self.parse(event_id)
        if cursor is None or self._floor is None or cursor < self._floor:
            return None
        return [(p, e) for p, e in self._events if p > cursor]

    def __iter__(self) -> Iterator[tuple[Position, Event]]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)
