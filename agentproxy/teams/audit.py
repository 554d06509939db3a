"""The audit log: one JSON line per create, delete, suspend, resume, share, credential change,
sign-in and refused request: who (user and key name), what, which agent, from where, and the result.

Nothing of a request's body is written, so no credential value and no message content can reach
it: an agent's id and group come from the answer, a credential's name from the path. Requests the
fast path answers itself (proxied agent traffic, see :mod:`agentproxy.api.fastpath`) are not
audited; a refused one of those is answered by aiohttp's path only when it falls back to it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from aiohttp import web

REFUSED = frozenset({401, 403, 429})
"""Statuses written as ``refused`` for any route."""


def action_of(method: str, route: str) -> str | None:
    """The audited action of a request to the route pattern ``route``, or None."""
    return {
        ("POST", "/sessions/{session}/agents"): "create",
        ("DELETE", "/sessions/{session}/agents/{agent}"): "delete",
        ("POST", "/sessions/{session}/agents/{agent}/suspend"): "suspend",
        ("POST", "/sessions/{session}/agents/{agent}/resume"): "resume",
        ("PUT", "/credentials/{name}"): "credential.set",
        ("DELETE", "/credentials/{name}"): "credential.delete",
        ("POST", "/start"): "create",
        ("DELETE", "/sessions/{session_id}"): "delete",
        ("GET", "/auth/callback"): "sign_in",
        ("PUT", "/sessions/{session}/agents/{agent}/share"): "share",
        ("POST", "/hooks/{hook}"): "hook.delivery",
    }.get((method, route))


class AuditLog:
    """Writes audit records as JSON lines to a stream (``stdout``) or a file (appended)."""

    def __init__(self, target: str, clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.clock = clock
        self._stream: IO[str] | None = None

    def _out(self) -> IO[str]:
        if self.target == "stdout":
            return sys.stdout
        if self._stream is None:
            self._stream = open(self.target, "a", encoding="utf-8")
        return self._stream

    def write(self, record: dict[str, Any]) -> None:
        """Write one record as one line."""
        out = self._out()
        out.write(json.dumps({"time": round(self.clock(), 3), **record}, sort_keys=True) + "\n")
        out.flush()

    def close(self) -> None:
        """Close the file (not stdout)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def middleware(self, principal_key: Any) -> Any:
        """The aiohttp middleware (outside the error middleware, so it sees every answer as sent)."""

        @web.middleware
        async def audit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
            action = action_of(request.method, route)
            if action is None and response.status not in REFUSED:
                return response
            record = record_of(request, response, action, request.get(principal_key))
            if action == "share" and 200 <= response.status < 300:
                record["group"] = _json_of(response).get("group")  # None: shared with no group now
            self.write(record)
            if action == "create" and 200 <= response.status < 300:
                answer = _json_of(response)
                if answer.get("group"):
                    self.write({**record_of(request, response, "share", request.get(principal_key)),
                                "group": answer["group"]})
            return response

        return audit_middleware


def record_of(request: web.Request, response: web.StreamResponse, action: str | None, principal: Any) -> dict:
    """The audit record of one answered request."""
    info = request.match_info
    answer = _json_of(response)
    error = answer.get("error") if isinstance(answer.get("error"), dict) else None
    agent = info.get("agent") or info.get("session_id") or answer.get("id") or answer.get("session_id")
    return {
        "action": action or "request",
        "user": getattr(principal, "name", None),
        "key": getattr(principal, "key", None),
        "method": request.method,
        "route": request.match_info.route.resource.canonical if request.match_info.route.resource else None,
        "session": info.get("session"),
        "agent": agent if isinstance(agent, str) else None,
        "credential": info.get("name"),
        "from": request.remote,
        "status": response.status,
        "result": "ok" if response.status < 400 else ("refused" if response.status in REFUSED else "failed"),
        "error": None if error is None else {"code": error.get("code"), "field": error.get("field")},
    }


def _json_of(response: web.StreamResponse) -> dict:
    """The JSON object of an answer held whole (a streamed one: empty)."""
    body = getattr(response, "body", None)
    if not isinstance(body, (bytes, bytearray)) or response.content_type != "application/json":
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
