"""Reading what a request says: ids in the path, query parameters and JSON bodies.

Each reader raises :class:`~agentproxy.api.errors.ApiError` naming the field
and the rule it breaks.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..backends.base import AgentStatus
from ..naming import AGENT_ID_RULE, SESSION_ID_RULE, is_valid_agent_id, is_valid_session_id
from .errors import ApiError

MAX_JSON_BODY = 1024 * 1024
"""The default of ``server.max_body``: the largest JSON body the API routes accept (the proxy
route streams bodies of any size)."""

STATUS_RULE = "must be one of " + ", ".join(s.value for s in AgentStatus)


def session_id(value: str, field: str = "session") -> str:
    """A session id, or 400 naming the rule."""
    if not is_valid_session_id(value):
        raise ApiError(400, f"{field}: {SESSION_ID_RULE}", code="invalid", field=field)
    return value


def agent_id(value: str, field: str = "agent") -> str:
    """An agent id, or 400 naming the rule."""
    if not is_valid_agent_id(value):
        raise ApiError(400, f"{field}: {AGENT_ID_RULE}", code="invalid", field=field)
    return value


def path_session(request: web.Request) -> str:
    """The ``{session}`` of the path."""
    return session_id(request.match_info["session"])


def path_agent(request: web.Request) -> tuple[str, str]:
    """The ``{session}`` and ``{agent}`` of the path."""
    return session_id(request.match_info["session"]), agent_id(request.match_info["agent"])


def query_status(request: web.Request) -> AgentStatus | None:
    """The optional ``status`` filter."""
    value = request.query.get("status")
    if value is None:
        return None
    try:
        return AgentStatus(value)
    except ValueError:
        raise ApiError(400, f"status: {STATUS_RULE}", code="invalid", field="status") from None


def query_session(request: web.Request) -> str | None:
    """The optional ``session`` filter."""
    value = request.query.get("session")
    return None if value is None else session_id(value)


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """A ``true``/``false`` query parameter."""
    value = request.query.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ApiError(400, f"{name}: must be true or false", code="invalid", field=name)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``."""
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ApiError(400, f"{name}: must be an integer from {low} to {high}", code="invalid", field=name)
    return number


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                  and content_type.endswith("+json"))


CURL_DEFAULT = "application/x-www-form-urlencoded"
"""What ``curl -d`` says it sends unless told otherwise."""


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The request's body, read as it streams in: 413 as soon as it passes ``limit`` bytes
    (a Content-Length beyond it is refused by the callers before they read)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The request's JSON object body; ``{}`` when there is no body.

    415 for a body that is not JSON, 413 beyond ``limit`` bytes, 400 for
    malformed JSON or a document that is not an object. A JSON document sent
    as a form (``curl -d '{...}'`` without a Content-Type) is taken as JSON.
    """
    if not request.body_exists:
        return {}
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, f"the body has {length} bytes; at most {limit} are accepted")
    as_form = request.content_type == CURL_DEFAULT
    if not _is_json(request.content_type) and not as_form:
        raise ApiError(415, f"the body must be application/json, not {request.content_type}")
    raw = await read_bounded(request, limit)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        if as_form:
            raise ApiError(415, f"the body must be application/json, not {CURL_DEFAULT}") from None
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_body")
    return data
