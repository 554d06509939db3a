"""A stand-in for Anthropic's Messages API, for tests that run real Claude Code offline.

The model itself is out of reach of the tests (no network, no key), so this small
aiohttp server takes its place on 127.0.0.1. It speaks ``POST /v1/messages`` with
and without streaming (Anthropic's server-sent events), answers
``POST /v1/messages/count_tokens``, and records every request it gets.

Why not a mock-LLM package: the maintained ones on PyPI (fakellm, mockllm) answer
fixed rule text or a hash of the request rather than text derived from the prompt,
match rules against the whole history (a tool trigger said once keeps matching on
every later turn), mockllm has no tool calls at all, neither records request bodies,
and both bring FastAPI, uvicorn and pydantic along for what is a hundred lines here.

What it answers, looking at the last user turn only:

- a ``tool_result`` (Claude Code ran a tool): ``tool done: <the result's text>``;
- a prompt holding ``write-file NAME CONTENT`` (one word each): a call of the
  ``Bash`` tool running ``printf %s CONTENT > NAME`` (in Claude Code's working
  directory), then, once its result comes back, the text above;
- any other prompt: ``model says: <the prompt>``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
ANSWER_PREFIX = "model says: "
TOOL_DONE_PREFIX = "tool done: "
WRITE_FILE = re.compile(r"write-file (?P<name>[A-Za-z0-9._-]+) (?P<content>[A-Za-z0-9._-]+)")


@dataclass
class Recorded:
    """One request the stand-in got."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def _text_of(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        if block.get("type") == "text":
            return str(block.get("text", ""))
        if block.get("type") == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                return "".join(_text_of(part) for part in content)
            return str(content or "")
    return ""


def last_user_turn(body: dict[str, Any]) -> tuple[str, str | None]:
    """The prompt of the last user message (system reminders left out) and the text of a
    tool result in it (None when it has none)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not messages:
        return "", None
    content = messages[-1].get("content")
    blocks = content if isinstance(content, list) else [content]
    results = [_text_of(b) for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    texts = [_text_of(b) for b in blocks if not (isinstance(b, dict) and b.get("type") == "tool_result")]
    prompt = "\n".join(t.strip() for t in texts if t.strip() and not t.lstrip().startswith("<system-reminder>"))
    return prompt, ("\n".join(results) if results else None)


def reply_to(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of the answer to a Messages API request (see the module's docstring)."""
    prompt, tool_result = last_user_turn(body)
    if tool_result is not None:
        return [{"type": "text", "text": TOOL_DONE_PREFIX + tool_result.strip()}]
    match = WRITE_FILE.search(prompt)
    if match and any(isinstance(t, dict) and t.get("name") == "Bash" for t in body.get("tools") or []):
        command = f"printf %s {match['content']} > {match['name']}"
        return [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": "Bash",
                 "input": {"command": command, "description": f"Write {match['name']}"}}]
    return [{"type": "text", "text": ANSWER_PREFIX + " ".join(prompt.split())}]


def _message(body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, Any]:
    stop = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "content": content,
            "model": body.get("model", "claude-standin"), "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 10}}


def stream_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of ``message``, as the Messages API streams them."""
    head = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": block["text"]}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {**block, "input": {}}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta",
                                                             "partial_json": json.dumps(block["input"])}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": 10}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


@dataclass
class ModelStandIn:
    """The server: ``async with ModelStandIn() as model`` serves on ``model.url``."""

    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    host: str = HOST
    """Where it listens: loopback, or the real node's bridge address (pods reach only that)."""
    key: str | None = None
    """The only key it takes (``x-api-key`` or a bearer token), answering others 401 as the
    real API does; None: any key."""
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def prompts(self) -> list[str]:
        """The last user prompt of every Messages request so far."""
        return [last_user_turn(r.body)[0] for r in self.requests
                if r.path == "/v1/messages" and isinstance(r.body, dict)]

    async def __aenter__(self) -> ModelStandIn:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.requests.append(Recorded(request.method, request.path, dict(request.query),
                                      dict(request.headers), body))
        if request.method != "POST" or not isinstance(body, dict):
            return web.json_response({"type": "error", "error": {"type": "not_found_error",
                                                                  "message": request.path}}, status=404)
        if self.key is not None and self.key not in (request.headers.get("x-api-key"),
                                                     request.headers.get("Authorization", "")[len("Bearer "):]):
            return web.json_response({"type": "error", "error": {"type": "authentication_error",
                                                                  "message": "invalid x-api-key"}}, status=401)
        if request.path == "/v1/messages/count_tokens":
            return web.json_response({"input_tokens": max(1, len(raw) // 4)})
        if request.path != "/v1/messages":
            return web.json_response({"type": "error", "error": {"type": "not_found_error",
                                                                  "message": request.path}}, status=404)
        message = _message(body, reply_to(body))
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for name, data in stream_events(message):
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response


async def _main(port: int) -> None:
    async with ModelStandIn(port=port) as model:
        print(model.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # for trying Claude Code by hand: python -m tests.model_standin [PORT]
    import sys

    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
