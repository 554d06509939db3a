"""The HTTP client of agentproxy's public API (nothing but HTTP: it works against any server).

Every failure becomes a :class:`~.errors.ClientError`: an error answer is a
:class:`~.errors.ServerError` with the server's code and message, a server
that cannot be reached is :class:`~.errors.Unreachable` naming the URL. The
API key travels in the ``Authorization`` header only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from ..sse import Event, read_events
from .errors import ClientError, ServerError, Unreachable, UsageProblem

DEFAULT_SERVER = "http://127.0.0.1:8080"
REQUEST_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0


def check_server_url(url: str) -> str:
    """``url`` without a trailing slash, or :class:`UsageProblem` naming the rule."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageProblem(f"--server {url!r}: must be an http:// or https:// URL with a host, "
                           f"e.g. {DEFAULT_SERVER}")
    if parts.username or parts.password:
        raise UsageProblem("--server: credentials do not belong in the URL; use --api-key or AGENTPROXY_API_KEY")
    if parts.query or parts.fragment:
        raise UsageProblem(f"--server {url!r}: must not have a query or a fragment")
    return url.rstrip("/")


def agent_path(session: str, agent: str, rest: str = "") -> str:
    """The API path of one agent (``rest`` appended)."""
    return f"/sessions/{quote(session, safe='')}/agents/{quote(agent, safe='')}{rest}"


class ApiClient:
    """An open connection pool to one agentproxy server. Use as ``async with``."""

    def __init__(self, server: str, api_key: str | None = None) -> None:
        self.server = check_server_url(server)
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(
            headers=self._headers, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.server + path

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json_body: Any = None, text: bool = False, timeout: float = REQUEST_TIMEOUT) -> Any:
        """Send one request; the decoded JSON answer (or text when ``text``), or a ClientError."""
        assert self._session is not None, "use ApiClient as `async with`"
        try:
            async with self._session.request(
                    method, self.url(path), params=params, json=json_body,
                    timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT)) as response:
                body = await response.read()
                if response.status >= 400:
                    raise server_error(response.status, body)
                if text:
                    return body.decode("utf-8", errors="replace")
                return json.loads(body) if body.strip() else None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from None
        except ValueError:
            raise ServerError(200, "invalid_response", f"{method} {path} answered something that is not JSON") from None

    async def events(self, path: str, params: Mapping[str, str] | None = None,
                     on_open: Callable[[], None] | None = None) -> AsyncIterator[Event]:
        """The Server-Sent Events of ``path`` until the server ends the stream; ``on_open`` is
        called once the server has answered (from then on no event is missed)."""
        assert self._session is not None, "use ApiClient as `async with`"
        try:
            async with self._session.get(self.url(path), params=params,
                                         headers={"Accept": "text/event-stream"}) as response:
                if response.status >= 400:
                    raise server_error(response.status, await response.read())
                if on_open is not None:
                    on_open()
                async for event in read_events(response.content):
                    yield event
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> Unreachable:
        return Unreachable(self.server, describe(exc))

    # The routes of the API, by name.

    async def list_agents(self, session: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """``GET /agents``."""
        params = {k: v for k, v in (("session", session), ("status", status)) if v}
        return (await self.request("GET", "/agents", params=params))["agents"]

    async def get_agent(self, session: str, agent: str) -> dict[str, Any]:
        """``GET /sessions/S/agents/A``."""
        return await self.request("GET", agent_path(session, agent))

    async def create_agent(self, session: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /sessions/S/agents``."""
        return await self.request("POST", f"/sessions/{quote(session, safe='')}/agents", json_body=dict(body))

    async def delete_agent(self, session: str, agent: str, purge: bool = False) -> dict[str, Any]:
        """``DELETE /sessions/S/agents/A``."""
        params = {"purge": "true"} if purge else None
        return await self.request("DELETE", agent_path(session, agent), params=params)

    async def suspend_agent(self, session: str, agent: str) -> dict[str, Any]:
        """``POST /sessions/S/agents/A/suspend``."""
        return await self.request("POST", agent_path(session, agent, "/suspend"))

    async def resume_agent(self, session: str, agent: str) -> dict[str, Any]:
        """``POST /sessions/S/agents/A/resume``."""
        return await self.request("POST", agent_path(session, agent, "/resume"))

    async def logs(self, session: str, agent: str, tail: int) -> str:
        """``GET .../logs?tail=N`` as text."""
        return await self.request("GET", agent_path(session, agent, "/logs"),
                                  params={"tail": str(tail), "format": "text"}, text=True)


class Subscription:
    """An event stream read by a task of its own into a queue, so that a caller can wait for
    the next event with a time limit, and knows when the stream is open.

    ``async with Subscription(...)`` returns once the server answered (or raises
    the error it answered with); :meth:`next` raises what ended the stream.
    """

    def __init__(self, client: ApiClient, path: str, params: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.path = path
        self.params = params
        self._queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscription:
        self._task = asyncio.create_task(self._pump())
        opened = asyncio.create_task(self._opened.wait())
        try:
            await asyncio.wait([opened, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
        if not self._opened.is_set():
            await self._close()
            item = self._queue.get_nowait()
            raise item if isinstance(item, BaseException) else StreamEnded(self.path)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _pump(self) -> None:
        try:
            async for event in self.client.events(self.path, self.params, on_open=self._opened.set):
                self._queue.put_nowait(event)
            self._queue.put_nowait(StreamEnded(self.path))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the reader, which raises it
            self._queue.put_nowait(exc)

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; None after ``timeout`` seconds without one."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # every later call raises it too
            raise item
        return item


class StreamEnded(ClientError):
    """The server closed an event stream."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the server ended the event stream {path}")


def server_error(status: int, body: bytes) -> ServerError:
    """The error of an answer: agentproxy's ``{"error": {...}}``, agentapi's problem details, or text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return ServerError(status, str(error.get("code") or "error"), str(error["message"]), error.get("field"))
        detail = data.get("detail") or data.get("title")  # agentapi answers RFC 9457 problem details
        if detail:
            return ServerError(status, "agent_error", str(detail))
    text = " ".join(body.decode("utf-8", errors="replace").split())[:200]
    return ServerError(status, "error", text or f"HTTP {status}")


def describe(exc: BaseException) -> str:
    """A short reason for a connection failure."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    os_error = getattr(exc, "os_error", exc)
    if isinstance(os_error, OSError):
        if os_error.errno:
            return os.strerror(os_error.errno)
        if os_error.strerror:
            return os_error.strerror
    return str(exc) or type(exc).__name__
