"""Every use of aiohttp's undocumented internals, in one module.

The relay's fast path joins aiohttp's server as one of its connections, so that a graceful
shutdown drains both alike, and serves a site of its own; the aiohttp route sends a response's
head with its first body bytes; the ``100 Continue`` written after the key check keeps aiohttp's
count of bytes sent right. aiohttp offers no public way to do any of these, so each goes through
a function here, and :data:`INTERNALS` lists what each relies on. ``pyproject.toml`` pins
aiohttp to the minor versions tested; the unit test of this module fails, naming the internal,
when an upgrade moves one (:func:`missing`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from aiohttp import http_writer, web, web_protocol, web_response, web_server


class CoalescedResponse(web.StreamResponse):
    """A response of known length: its headers go out with the first body bytes (one write, not two)."""

    _send_headers_immediately = False


class ServerConnection:
    """What aiohttp's :class:`~aiohttp.web_server.Server` reads of each of its connections besides
    ``close()`` and ``shutdown(timeout)``: the task handling a request, if any (none here)."""

    __slots__ = ()
    _task_handler = None


def join_server(server: web_server.Server, protocol: Any, transport: asyncio.BaseTransport) -> None:
    """Count ``protocol`` among the connections of aiohttp's ``server`` (closed and drained at shutdown)."""
    server.connection_made(protocol, transport)  # type: ignore[arg-type]


def leave_server(server: web_server.Server, protocol: Any, exc: BaseException | None = None) -> None:
    """``protocol`` is no longer one of ``server``'s connections (it closed, or aiohttp's protocol took over)."""
    server.connection_lost(protocol, exc)


def site_backlog(site: web.BaseSite) -> int:
    """The listen backlog a site was made with."""
    return site._backlog


def serve_site(site: web.BaseSite, server: asyncio.AbstractServer) -> None:
    """Let ``site`` own the listening ``server`` (its runner lists its addresses and closes it)."""
    site._server = server


def restart_output_count(request: web.BaseRequest) -> None:
    """After an interim answer (``100 Continue``) written on ``request``'s writer: its count of bytes
    sent starts again, as aiohttp's own handler does, so that the answer counts as not begun."""
    request.writer.output_size = 0


def _in_source(obj: Any, text: str) -> bool:
    try:
        return text in inspect.getsource(obj)
    except (OSError, TypeError):
        return False


INTERNALS: dict[str, Callable[[], bool]] = {
    "aiohttp.web.StreamResponse._send_headers_immediately (read by StreamResponse._start)":
        lambda: hasattr(web.StreamResponse, "_send_headers_immediately")
        and _in_source(web_response.StreamResponse, "self._send_headers_immediately"),
    "aiohttp.web_server.Server.connection_made(handler, transport)":
        lambda: list(inspect.signature(web_server.Server.connection_made).parameters)[:3]
        == ["self", "handler", "transport"],
    "aiohttp.web_server.Server.connection_lost(handler, exc) reading handler._task_handler":
        lambda: list(inspect.signature(web_server.Server.connection_lost).parameters)[:3] == ["self", "handler", "exc"]
        and _in_source(web_server.Server.connection_lost, "handler._task_handler"),
    "aiohttp.web_server.Server.pre_shutdown() calling conn.close() on each connection":
        lambda: _in_source(getattr(web_server.Server, "pre_shutdown", None), "conn.close()"),
    "aiohttp.web_server.Server.shutdown(timeout) calling conn.shutdown(timeout) on each connection":
        lambda: _in_source(web_server.Server.shutdown, "conn.shutdown(timeout)"),
    "aiohttp.web_server.Server() making a RequestHandler":
        lambda: callable(web_server.Server)
        and _in_source(web_server.Server.__call__, "RequestHandler("),
    "aiohttp.web.BaseSite._backlog and ._server (slots)":
        lambda: {"_backlog", "_server"} <= set(getattr(web.BaseSite, "__slots__", ())),
    "aiohttp.web.AppRunner.server (the Server of the app)":
        lambda: isinstance(inspect.getattr_static(web.AppRunner, "server", None), property),
    "aiohttp.http_writer.StreamWriter.output_size (read by RequestHandler after an error)":
        lambda: _in_source(http_writer.StreamWriter, "self.output_size")
        and _in_source(web_protocol.RequestHandler, "request.writer.output_size"),
}
"""Each internal used here, and how to tell that the installed aiohttp still has it."""


def missing() -> list[str]:
    """The internals of :data:`INTERNALS` the installed aiohttp no longer has (empty when all are there)."""
    return [name for name, present in INTERNALS.items() if not present()]
