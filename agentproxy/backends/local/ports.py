"""TCP ports for agentapi servers, from the configured range."""

from __future__ import annotations

import asyncio
import socket

from ..base import Unavailable

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a listening socket could be bound to ``host:port`` right now.

    SO_REUSEADDR mirrors what agentapi's (Go) listener does, so a port whose
    only users are connections in TIME_WAIT counts as free, as it is for agentapi.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out the ports of ``[start, end]``, one agent per port.

    Allocation is serialised by a lock, so two concurrent creates never get the
    same port; a port another program listens on is skipped. Allocation goes
    round the range rather than always taking the lowest free port, so that a
    port freed by a deleted agent is not handed to the next one at once (its
    old clients may still be reconnecting to it).
    """

    def __init__(self, start: int, end: int, host: str = HOST) -> None:
        if start > end:
            raise ValueError(f"empty port range {start}-{end}")
        self.start, self.end, self.host = start, end, host
        self._owners: dict[int, str] = {}
        self._next = start
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self.end - self.start + 1

    def owner_of(self, port: int) -> str | None:
        """The agent the port is assigned to, if any."""
        return self._owners.get(port)

    @property
    def assigned(self) -> dict[int, str]:
        """A copy of the assignments (port -> agent id)."""
        return dict(self._owners)

    async def allocate(self, owner: str) -> int:
        """A free port of the range, now assigned to ``owner``; :class:`Unavailable` when none is left."""
        async with self._lock:
            for offset in range(self.size):
                port = self.start + (self._next - self.start + offset) % self.size
                if port in self._owners or not port_is_free(port, self.host):
                    continue
                self._owners[port] = owner
                self._next = self.start + (port - self.start + 1) % self.size
                return port
        taken = len(self._owners)
        raise Unavailable(
            f"no free port in local_mode.ports {self.start}-{self.end}: {taken} assigned to agents, "
            f"{self.size - taken} in use by other programs; delete agents or widen the range")

    def claim(self, port: int, owner: str) -> bool:
        """Assign a port an existing agent already uses (re-adoption after a restart of the
        proxy); False when it is assigned to another agent or outside the range."""
        if not self.start <= port <= self.end or self._owners.get(port, owner) != owner:
            return False
        self._owners[port] = owner
        return True

    def release(self, port: int, owner: str) -> None:
        """Give the port back (only if ``owner`` holds it: a late release must not free a
        port that was handed to someone else meanwhile)."""
        if self._owners.get(port) == owner:
            del self._owners[port]
