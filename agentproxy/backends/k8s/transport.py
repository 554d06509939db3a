"""The k8s client's HTTP transport: aiohttp, with the credentials kr8s loaded.

kr8s reads the kubeconfig or the ServiceAccount and holds the credentials; every request of the
k8s backend, and every watch, is sent over aiohttp with them: over aiohttp a server-side apply
costs this process a tenth of the CPU it took through kr8s's own ``call_api`` (httpx, httpcore
and anyio's TLS stream), a watch event 0.58-0.79x (``bin/just bench-transport``,
``docs/performance.md``). Every create of an agent is three such calls or more, and every change
of every agent an event on every replica. The connection is made as kr8s makes its own:
the API server of its kubeconfig or ServiceAccount, its TLS context (the cluster's CA, a client
certificate, or none to verify), its bearer token, its TLS server name and proxy, else the proxy
the environment names for the server (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, none where
``NO_PROXY`` covers it, as httpx honours them). Nothing else of the environment: aiohttp's
``trust_env`` would also send a ``~/.netrc`` password with every call (httpx does not), and look
both up again in a thread for each.

A watch that stays silent longer than its read timeout ends quietly: its caller starts it
again from the last resourceVersion. Watches of Events get no bookmarks from the API server,
so a quiet namespace leaves them silent for minutes; whether the server still answers is the
health checks' question (:mod:`.health`), not theirs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiohttp

from ... import __version__

__all__ = ["AiohttpTransport", "Transport", "WatchResponse"]

log = logging.getLogger(__name__)

class WatchResponse(Protocol):
    """What a caller reads of a watch: its status, its body when it is an error, its lines."""

    status: int

    async def error_body(self) -> bytes:
        """The whole body (an error status's JSON)."""
        ...

    def lines(self) -> AsyncIterator[bytes]:
        """The body's lines, each a watch event (or empty), as they arrive; ends when the server
        ends the watch, or quietly after the read timeout passed without a byte."""
        ...


class Transport(Protocol):
    """How :class:`.client.Client` reaches the API server: requests, and watches."""

    async def request(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str],
                      body: bytes | None, timeout: float) -> tuple[int, bytes]:
        """The status and body of the answer to ``method path?params``, within ``timeout`` seconds."""
        ...

    def open(self, path: str, params: Mapping[str, str], headers: Mapping[str, str], *,
             connect_timeout: float, read_timeout: float) -> Any:
        """An async context manager of a :class:`WatchResponse` for ``GET path?params``."""
        ...

    async def close(self) -> None:
        """Close what is open (a later call opens again)."""
        ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self.status = response.status
        self._read_timeout = read_timeout

    async def error_body(self) -> bytes:
        return await self._response.read()

    async def lines(self) -> AsyncIterator[bytes]:
        # Split here rather than with the reader's readline, which refuses a line longer than
        # its buffer (128 KiB), and an object in a watch event may be a megabyte or more.
        content = self._response.content
        pending = b""
        while True:
            try:
                chunk = await content.readany()
            except TimeoutError:  # aiohttp's read timeout: silence, see above
                log.debug("watch %s silent for %g s; ending it", self._response.url.path, self._read_timeout)
                return
            if not chunk:  # the server ended the watch
                if pending.strip():
                    yield pending
                return
            if b"\n" not in chunk:
                pending += chunk
                continue
            *complete, rest = (pending + chunk).split(b"\n")
            pending = rest
            for line in complete:
                yield line


class AiohttpTransport:
    """Requests and watches over one aiohttp session per event loop, with the credentials of
    kr8s's ``api``."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._proxy: str | None = None

    async def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a session belongs to its event loop; another loop's is left
            self._session, self._loop, self._opening = None, loop, asyncio.Lock()
        session = self._session
        if session is not None and not session.closed:
            return session
        async with self._opening:
            if self._session is None or self._session.closed:
                context = await self.api.auth.ssl_context()
                if context is True:  # nothing to add to verification: the default, with httpx's CAs
                    context = _default_context()
                self._proxy = self.api.auth.proxy or environment_proxy(self.api.auth.server)
                # No bound on connections: the client bounds its calls (k8s_mode.api.max_in_flight),
                # and each watch holds a connection of its own for as long as it lasts.
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=context, limit=0),
                    headers={"User-Agent": f"agentproxy/{__version__}", "Accept": "application/json"})
            return self._session

    def _sent(self, headers: Mapping[str, str]) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The server's base URL, the headers over kr8s's bearer token (if it has one), and the
        connection's options (TLS server name, proxy)."""
        auth = self.api.auth
        sent = {**({"Authorization": f"Bearer {auth.token}"} if auth.token else {}), **headers}
        options: dict[str, Any] = {}
        if auth.tls_server_name:
            options["server_hostname"] = auth.tls_server_name
        if self._proxy:
            options["proxy"] = self._proxy
        # The server's URL may carry a path of its own (a proxy in front of the API server).
        return auth.server.rstrip("/"), sent, options

    async def request(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str],
                      body: bytes | None, timeout: float) -> tuple[int, bytes]:
        """One request, its body read whole."""
        session = await self._session_now()
        server, sent, options = self._sent(headers)
        async with session.request(method, server + path, params=dict(params), data=body, headers=sent,
                                   timeout=aiohttp.ClientTimeout(total=timeout), **options) as response:
            return response.status, await response.read()

    @asynccontextmanager
    async def open(self, path: str, params: Mapping[str, str], headers: Mapping[str, str], *,
                   connect_timeout: float, read_timeout: float) -> AsyncIterator[WatchResponse]:
        """A watch of ``GET path?params``; ``headers`` over kr8s's bearer token, if it has one."""
        session = await self._session_now()
        server, sent, options = self._sent(headers)
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        async with session.get(server + path, params=dict(params), headers=sent, timeout=timeout,
                               **options) as response:
            yield _AiohttpResponse(response, read_timeout)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


def environment_proxy(server: str) -> str | None:
    """The proxy the environment names for ``server``'s scheme (or ``ALL_PROXY``), None when
    there is none or ``NO_PROXY`` covers the server's host."""
    proxies = urllib.request.getproxies_environment()
    url = urllib.parse.urlsplit(server)
    if not proxies or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


def _default_context() -> ssl.SSLContext:
    """The verification httpx does by default (certifi's CAs), where kr8s gives no CA of its own."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - httpx, hence kr8s, depends on it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
