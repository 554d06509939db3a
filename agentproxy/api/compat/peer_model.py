"""The agentapi-proxy session model over agentproxy's agents (pure functions).

One agentapi-proxy session is one agent in a configured agentproxy session; the
session id is the agent id. These functions say how an agent looks as a session
(``SessionInfo``), what a ``POST /start`` body may hold, which ``GET /search``
filters apply, and which first path segments belong to routes rather than to
sessions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...backends.base import AgentState, AgentStatus
from ...spec import SpecError, check_text
from ..model import iso8601

PEER_ROUTE_NAMES = frozenset({"start", "search", "sessions", "health"})
"""First path segments of the peer's own routes."""

ANONYMOUS_USER = "anonymous"
"""The ``user_id`` of sessions started without a key, as the peer names it."""

MAX_TAGS = 64
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 4096
TAGS_RULE = (f"must be an object of at most {MAX_TAGS} tags, each a name of 1 to {MAX_TAG_KEY} characters "
             f"(no '=' or control characters) with a string value of at most {MAX_TAG_VALUE} characters")
ENVIRONMENT_RULE = "must be an object of variable names to string values"
MESSAGE_RULE = "must be a string"

_ACTIVE = frozenset({AgentStatus.PENDING, AgentStatus.STARTING, AgentStatus.READY})
_TAG_KEY = re.compile(r"^[^\x00-\x1f\x7f=]+$")


def new_session_id() -> str:
    """A fresh session id: a random UUID, as the peer makes them (it is also a valid agent id)."""
    return str(uuid.uuid4())


def peer_status(status: AgentStatus) -> str:
    """The peer's status word for an agent's status.

    The peer calls a session ``active`` from the moment it is started; agentproxy's
    ``pending``, ``starting`` and ``ready`` are all that. ``failed`` is the peer's
    word too. The peer forgets a session whose process ended; agentproxy keeps the
    agent, so ``stopping`` and ``stopped`` are shown as they are, and so is ``suspended``
    (the peer has no such state; a request to the session resumes it).
    """
    return "active" if status in _ACTIVE else status.value


def session_port(state: AgentState) -> int:
    """The port the agent's agentapi listens on (0 while not known yet)."""
    port = state.details.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if state.upstream:
        return urlsplit(state.upstream).port or 0
    return 0


def session_info(state: AgentState) -> dict[str, Any]:
    """The agent as the peer's ``SessionInfo``, plus ``created_at``/``updated_at`` (which agentapi-ui reads)."""
    started = iso8601(state.created_at)
    return {
        "session_id": state.id,
        "user_id": state.spec.owner or ANONYMOUS_USER,
        "status": peer_status(state.status),
        "started_at": started,
        "port": session_port(state),
        "tags": dict(state.spec.tags) or None,  # the peer answers null for a session without tags
        "created_at": started,
        "updated_at": started,
    }


@dataclass(frozen=True)
class StartRequest:
    """What a ``POST /start`` body asks for."""

    environment: dict[str, str]
    tags: dict[str, str]
    message: str | None
    """The first message: the tag ``message`` when set, else the body's ``message``."""


def parse_start(body: Mapping[str, Any]) -> StartRequest:
    """The fields of a ``POST /start`` body, or :class:`SpecError` naming the first bad one.

    ``environment``, ``tags`` and ``message`` are read; other fields (agentapi-ui
    sends ``metadata``) are ignored, as the peer ignores them. Variable names and
    values are checked later, with the agent's spec.
    """
    environment = body.get("environment")
    if environment is None:
        environment = {}
    if not isinstance(environment, dict):
        raise SpecError("environment", ENVIRONMENT_RULE, kind="invalid")
    tags = body.get("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise SpecError("tags", TAGS_RULE, kind="invalid")
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key) or len(key) > MAX_TAG_KEY:
            raise SpecError("tags", TAGS_RULE, kind="invalid")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise SpecError(f"tags.{key}", TAGS_RULE, kind="invalid")
        check_text("tags", key, kind="invalid")
        check_text(f"tags.{key}", value, kind="invalid")
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        raise SpecError("message", MESSAGE_RULE, kind="invalid")
    if message is not None:
        check_text("message", message, kind="invalid")
    first = tags.get("message") or message or None
    return StartRequest(environment=dict(environment), tags=dict(tags), message=first)


@dataclass(frozen=True)
class SearchFilter:
    """``GET /search``'s filters: an exact status and tags that must all match."""

    status: str | None
    tags: dict[str, str]

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SearchFilter:
        """Read ``status`` and ``tag.KEY=VALUE`` (the first value of each); ``page``,
        ``limit`` and ``user_id`` are ignored, as by the peer."""
        tags: dict[str, str] = {}
        for name in query:
            if name.startswith("tag.") and name not in tags:
                tags.setdefault(name[len("tag."):], query[name])
        return cls(status=query.get("status") or None, tags=tags)

    def matches(self, info: Mapping[str, Any]) -> bool:
        """True when the session passes every filter."""
        if self.status is not None and info["status"] != self.status:
            return False
        tags = info["tags"] or {}
        return all(tags.get(key) == value for key, value in self.tags.items())


def search(states: Iterable[AgentState], flt: SearchFilter) -> list[dict[str, Any]]:
    """The sessions of ``states`` that pass ``flt``, newest first."""
    ordered = sorted(states, key=lambda s: iso8601(s.created_at), reverse=True)
    return [info for info in map(session_info, ordered) if flt.matches(info)]


def first_segment(path: str) -> str:
    """The first segment of a URL path (``/a/b`` -> ``a``; a parameter gives ``""``)."""
    segment = path.lstrip("/").split("/", 1)[0]
    return "" if "{" in segment else segment


def reserved_names(route_paths: Iterable[str]) -> frozenset[str]:
    """Agent ids that would name a route: the first static segment of each of
    agentproxy's routes, and of the peer's."""
    return frozenset({first_segment(p) for p in route_paths} - {""}) | PEER_ROUTE_NAMES


def proxy_route(reserved: Iterable[str]) -> str:
    """The path pattern of ``ANY /{id}/...``, matching no id in ``reserved`` (so that a
    request to one of agentproxy's routes with another method still gets its 405)."""
    names = "|".join(re.escape(name) for name in sorted(reserved))
    return f"/{{session_id:(?!(?:{names})/)[^/]+}}/{{path:.*}}"
