"""The stream clients of the proxy benchmark, each run as a process of its own.

- ``events URL``: reads one Server-Sent Events stream with a blocking socket and stamps
  every event with ``CLOCK_MONOTONIC`` (one clock for all processes of the machine) when
  the read that completed it returned. It prints ``ready PORT`` (its own port) once the
  answer's headers are in; on a line on its standard input it prints the events it got as
  JSON and ends.
- ``idle URL --count N``: opens N event streams (at most 50 connecting at a time), waits for
  each one's headers and first bytes, prints ``{"open": n, "failed": m}``, holds them
  without reading until a line on its standard input, then closes them.

Only the HTTP/1.1 needed for that is spoken: one request, a response with
``Transfer-Encoding: chunked`` or without a length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import socket
import sys
import time
from urllib.parse import urlsplit


def _request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"GET {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode()


class Dechunker:
    """Incremental decoder of ``Transfer-Encoding: chunked`` bodies."""

    def __init__(self) -> None:
        self.buffer = b""
        self.left = 0  # bytes of the current chunk still to come
        self.crlf = 0  # bytes of the CRLF after a chunk still to skip

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while self.buffer:
            if self.crlf:
                skipped = min(self.crlf, len(self.buffer))
                self.buffer, self.crlf = self.buffer[skipped:], self.crlf - skipped
                continue
            if self.left:
                piece = self.buffer[:self.left]
                out.append(piece)
                self.buffer, self.left = self.buffer[len(piece):], self.left - len(piece)
                if not self.left:
                    self.crlf = 2
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                break
            self.buffer, self.left = rest, int(line.split(b";")[0], 16)
            if not self.left:  # the last chunk
                break
        return b"".join(out)


def parse_events(reads: list[tuple[int, bytes]], chunked: bool) -> list[tuple[int, str]]:
    """The events in a stream's body read in pieces, each stamped with the piece that completed it."""
    decoder = Dechunker() if chunked else None
    events: list[tuple[int, str]] = []
    text = b""
    for stamp, raw in reads:
        text += decoder.feed(raw) if decoder else raw
        text = text.replace(b"\r\n", b"\n")
        while b"\n\n" in text:
            event, _, text = text.partition(b"\n\n")
            if event.strip() and not event.startswith(b":"):
                events.append((stamp, event.decode(errors="replace")))
    return events


def read_events(url: str) -> None:
    """The ``events`` role."""
    host, port, request = _request(url)
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            sys.exit(f"{url}: the connection closed before the headers")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        sys.exit(f"{url}: {head.splitlines()[0].decode(errors='replace')}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    print("ready", sock.getsockname()[1], flush=True)  # the port, to tell this stream's packets
    sock.settimeout(None)
    # Reads are only stamped and kept while the stream runs; they are parsed after it. A reader
    # that parsed on every read would compete for the CPU with the processes it measures.
    reads: list[tuple[int, bytes]] = [(time.monotonic_ns(), body)]
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([sock, stdin], [], [])
        if sock in ready:
            raw = sock.recv(65536)
            stamp = time.monotonic_ns()
            if not raw:
                break
            reads.append((stamp, raw))
        elif stdin in ready:
            break
    sock.close()
    events = parse_events(reads, chunked)
    print(json.dumps(events), flush=True)


async def hold_idle(url: str, count: int) -> None:
    """The ``idle`` role."""
    host, port, request = _request(url)
    gate = asyncio.Semaphore(50)
    writers: list[asyncio.StreamWriter] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                    raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                await asyncio.wait_for(reader.read(1), 30)  # the replay of the conversation began
                writers.append(writer)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
                failed += 1

    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"open": len(writers), "failed": failed}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description="Stream clients of the proxy benchmark (run by benchmarks/proxy.py).")
    parser.add_argument("role", choices=["events", "idle"])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    if args.role == "events":
        read_events(args.url)
    else:
        asyncio.run(hold_idle(args.url, args.count))


if __name__ == "__main__":
    main()
