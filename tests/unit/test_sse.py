"""Reading agentapi's event stream: the Server-Sent Events parser under awkward framing.

The stream here is written by a small aiohttp handler, because the framing cases
(a 300 KB event, one byte per write, comments, CRLF line ends) are ones the real
agentapi does not produce on cue; the follower itself runs against the real
agentapi in the local and e2e suites.
"""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentproxy.sse import read_events

LONG = "x" * 300_000


async def serve_bytes(payload: bytes, chunk: int) -> TestServer:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for offset in range(0, len(payload), chunk):
            await response.write(payload[offset:offset + chunk])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/events", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def events_of(payload: bytes, chunk: int) -> list[tuple[str, str]]:
    server = await serve_bytes(payload, chunk)
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{server.port}/events") as response:
                return [(event.name, event.data) async for event in read_events(response.content)]
    finally:
        await server.close()


PAYLOAD = (
    ": a comment, ignored\n"
    "event: message_update\n"
    f"data: {json.dumps({'id': 1, 'role': 'agent', 'message': LONG})}\n"
    "\n"
    "event: status_change\r\n"
    "data:{\"status\": \"stable\"}\r\n"
    "\r\n"
    "data: first line\n"
    "data: second line\n"
    "\n"
    "event: ignored-without-data\n"
    "\n"
).encode()


EXPECTED = [("message_update", json.dumps({"id": 1, "role": "agent", "message": LONG})),
            ("status_change", '{"status": "stable"}'),
            ("message", "first line\nsecond line")]


async def test_a_long_event_split_anywhere_arrives_whole():
    for chunk in (7, 4096, 65_537, len(PAYLOAD)):
        assert await events_of(PAYLOAD, chunk) == EXPECTED, chunk


async def test_one_byte_per_write():
    short = PAYLOAD.replace(LONG.encode(), b"short")
    assert await events_of(short, 1) == [(EXPECTED[0][0], EXPECTED[0][1].replace(LONG, "short")), *EXPECTED[1:]]
