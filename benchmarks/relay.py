"""The smallest TCP byte relay on uvloop: a floor for the proxy benchmark, not a proxy.

It reads no HTTP, checks nothing and routes nowhere: every byte from a client goes to one
upstream port and back. What it costs per request and per event is what any proxy written in
Python on uvloop pays for the hop itself, whatever it does on top.

Usage: ``python benchmarks/relay.py --listen PORT --upstream PORT`` (both on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio

HOST = "127.0.0.1"


class Side(asyncio.Protocol):
    """One connection of a pair; what it receives is written to the other."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.early: list[bytes] = []
        """Bytes that came before the other side was connected."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP stream: a Transport (the loop sets TCP_NODELAY)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()
        self.transport = None


class Client(Side):
    """The client's side: connects its upstream side on arrival."""

    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(Side, HOST, self.upstream)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        if self.transport is None:  # the client left meanwhile
            upstream.transport.close()  # type: ignore[union-attr]  # both sides are connected by now
            return
        for data in self.early:
            upstream.transport.write(data)  # type: ignore[union-attr]  # both sides are connected by now
        self.early.clear()


async def serve(listen: int, upstream: int) -> None:
    """Relay connections to ``listen`` to ``upstream`` until cancelled."""
    server = await asyncio.get_running_loop().create_server(lambda: Client(upstream), HOST, listen)
    print("listening", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # the plain loop, where the platform has no uvloop
        asyncio.run(serve(args.listen, args.upstream))
    else:
        uvloop.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
