"""Relay TCP connections from one address to another, bytes unchanged.

The real node's pods reach the API server through the ``kubernetes`` Service:
kube-proxy translates its cluster IP into the API server's advertised address,
the node's bridge address. kube-apiserver listens on one address only, loopback,
so this relay listens on the bridge address and passes every connection on to
it. TLS goes end to end (the API server's certificate names the bridge address
and the Service's names); the relay sees only encrypted bytes.

``python testenv/relay.py --listen 198.18.0.1:PORT --to 127.0.0.1:PORT --owner NODE_DIR``
(``--owner`` names the real node whose clean-up stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CONNECT_TIMEOUT = 10.0
CHUNK = 65536


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half-close stays one)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _relay(target: tuple[str, int], client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
    except (TimeoutError, OSError):
        client_w.transport.abort()
        return
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for w in (up_w, client_w):
            with contextlib.suppress(Exception):
                w.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Relay until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(lambda r, w: _relay(target, r, w), *listen, reuse_address=True)
    print(f"relaying {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, type=_address, help="HOST:PORT to accept connections on")
    parser.add_argument("--to", required=True, type=_address, help="HOST:PORT to pass them on to")
    parser.add_argument("--owner", required=True, help="state directory of the real node it belongs to")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
