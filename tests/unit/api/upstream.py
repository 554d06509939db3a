"""An imitation of an agentapi server, for testing the proxy.

The proxy's tests run against the real agentapi (``test_proxy_real_agentapi.py``);
this small aiohttp server is for the faults and observations the real one cannot
give (what exactly it received, events held back on cue, a response cut off
mid-way, a huge download) and for the API tests that need an upstream without a
process. It imitates the parts of agentapi's HTTP API that matter to a reverse
proxy:

- the Host check: any Host but ``localhost``, ``127.0.0.1`` or ``[::1]`` (with or
  without a port) gets 400 ``Invalid host header``, as agentapi answers;
- ``GET /status``, ``GET /messages`` and ``POST /message`` (JSON);
- ``GET /events``: Server-Sent Events (``message_update`` / ``status_change``);
- ``POST /upload``: a multipart upload, read as a stream.

Two routes exist only for tests: ``GET /debug/headers`` echoes the request
headers and answers with hop-by-hop headers of its own, and
``GET /debug/download?size=N`` streams N bytes (``&cut=M``: the connection
drops after M of them).

Run alone: ``python -m tests.unit.api.upstream --port 0``
prints ``listening on http://127.0.0.1:PORT`` and serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
EVENT_STREAM_LIMIT = 600.0
"""Seconds an idle event stream stays open at most (every loop here is bounded)."""


def host_name(host: str) -> str:
    """The host part of a Host header (``[::1]:3284`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass
class Recorded:
    """One request as the imitation saw it."""

    method: str
    raw_path: str
    headers: list[tuple[str, str]]


@dataclass
class ImitationAgent:
    """The state of one imitated agentapi server."""

    status: str = "stable"
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    event_gate: asyncio.Queue[Any] | None = None
    """When set, ``/events`` sends one event per item taken from this queue."""
    streams_open: int = 0
    streams_closed: int = 0
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    upload_progress: int = 0
    """Bytes of file content ``/upload`` has read so far (all uploads together)."""

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._host_check], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/status", self.get_status),
            web.get("/messages", self.get_messages),
            web.post("/message", self.post_message),
            web.get("/events", self.get_events),
            web.post("/upload", self.upload),
            web.get("/debug/headers", self.debug_headers),
            web.get("/debug/download", self.download),
        ])
        return app

    @web.middleware
    async def _host_check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if len(self.requests) >= 1000:
            del self.requests[:500]
        self.requests.append(Recorded(request.method, request.raw_path, list(request.headers.items())))
        if host_name(request.headers.get("Host", "")) not in ALLOWED_HOSTS:
            return web.Response(status=400, text="Invalid host header")
        return await handler(request)

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": self.status, "agent_type": "claude"})

    async def get_messages(self, request: web.Request) -> web.Response:
        return web.json_response({"messages": self.messages})

    async def post_message(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"title": "Bad Request", "detail": "invalid JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("content"), str) \
                or body.get("type") not in ("user", "raw"):
            return web.json_response({"title": "Unprocessable Entity", "detail": "content and type"}, status=422)
        now = time.time()
        self.messages.append({"id": len(self.messages), "role": "user", "content": body["content"], "time": now})
        self.messages.append({"id": len(self.messages), "role": "agent", "content": f"echo: {body['content']}",
                              "time": now})
        return web.json_response({"ok": True})

    async def get_events(self, request: web.Request) -> web.StreamResponse:
        """``?count=N&interval=SECONDS``: N ``message_update`` events (each carries ``sent``, the
        monotonic clock when it was written), then the stream stays open until the client leaves."""
        count = int(request.query.get("count", "3"))
        interval = float(request.query.get("interval", "0"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        self.streams_open += 1
        try:
            await response.prepare(request)
            await response.write(_sse("status_change", {"status": self.status}))
            for seq in range(count):
                if self.event_gate is not None:
                    await asyncio.wait_for(self.event_gate.get(), 30)
                elif interval:
                    await asyncio.sleep(interval)
                await response.write(_sse("message_update", {"id": seq, "message": f"event {seq}",
                                                             "sent": time.monotonic()}))
            await asyncio.sleep(EVENT_STREAM_LIMIT)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams_open -= 1
            self.streams_closed += 1
            self.stream_closed.set()
        return response

    async def upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        digest, size, name = hashlib.sha256(), 0, None
        async for part in reader:
            if part.name != "file":
                continue
            name = part.filename
            while chunk := await part.read_chunk(256 * 1024):
                digest.update(chunk)
                size += len(chunk)
                self.upload_progress += len(chunk)
        if name is None:
            return web.json_response({"title": "Bad Request", "detail": "no file part"}, status=400)
        record = {"ok": True, "filePath": f"/tmp/uploads/{name}", "bytes": size, "sha256": digest.hexdigest()}
        self.uploads.append(record)
        return web.json_response(record)

    async def debug_headers(self, request: web.Request) -> web.Response:
        response = web.json_response({"headers": list(request.headers.items()), "raw_path": request.raw_path})
        response.headers["X-Agent"] = "imitation"
        response.headers["X-Hop-Secret"] = "must-not-pass"
        response.headers["Connection"] = "X-Hop-Secret"
        response.headers["Proxy-Authenticate"] = 'Basic realm="upstream"'
        response.headers["Trailer"] = "X-Checksum"
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        """``?size=N`` bytes; with ``&cut=M`` the connection is dropped after M of them."""
        size = int(request.query.get("size", "0"))
        cut = int(request.query.get("cut", str(size)))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        block = b"x" * 65536
        left = min(size, cut)
        while left > 0:
            await response.write(block[: min(left, len(block))])
            left -= min(left, len(block))
        if cut < size:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def _serve(port: int) -> None:
    runner = web.AppRunner(ImitationAgent().app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
