"""Every API call of the k8s backend goes through here, so errors become backend errors with
the server's own message, and calls are counted. kr8s loads the credentials; the calls are sent
over aiohttp with them (see :mod:`.transport`).

Credentials: a kubeconfig when there is one, else, in a pod, the mounted
ServiceAccount (see :mod:`.credentials`). kr8s reads a ServiceAccount's token
once; so with in-cluster credentials each request here carries the token of a
:class:`~.credentials.TokenFile`, read again periodically and at once after a 401
(the request is then repeated).

Every call is bounded by ``request_timeout``. With an :class:`~.health.ApiHealth`,
every answer is reported to it, and while the server has not answered for a while
calls fail at once with 503 instead of each waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import kr8s
import kr8s.asyncio

from ...settings.schema import K8sApiSettings
from ..base import BackendError, Conflict, Forbidden, NotFound, Rejected, Unavailable
from .credentials import SERVICE_ACCOUNT_DIR, TOKEN_RELOAD_PERIOD, TokenFile, kubeconfig_present, service_account_dir
from .health import ApiHealth
from .kinds import kind_of, path_of
from .transport import AiohttpTransport, Transport

__all__ = ["Client", "Gone", "NamespaceMissing", "TokenFile", "kubeconfig_present", "service_account_dir", "translate"]

log = logging.getLogger(__name__)

# A client made without settings (tests, tools) behaves as the settings' defaults say.
DEFAULT_REQUEST_TIMEOUT = K8sApiSettings.request_timeout
DEFAULT_RETRY_AFTER = K8sApiSettings.retry_after
DEFAULT_MAX_IN_FLIGHT = K8sApiSettings.max_in_flight

_DENIED = re.compile(r'cannot (\w+) resource "([^"]+)"')
"""RBAC's refusal: ``... cannot create resource "statefulsets" in API group "apps" ...``."""


class NamespaceMissing(Unavailable):
    """The namespace the proxy works in does not exist (a setting to fix, or a namespace to create)."""


class Gone(Exception):
    """The resourceVersion a watch asked for is too old (HTTP 410): relist."""


def _from_status(code: int, body: Any, verb: str, resource: str,
                 retry_after: float = DEFAULT_RETRY_AFTER) -> BackendError:
    """A backend error for an API answer with an error status: RBAC names the
    verb and resource; admission, quota and validation messages pass through; a
    namespace that does not exist is the proxy's configuration, not a missing agent."""
    status = body if isinstance(body, dict) else {}
    message = status.get("message") or f"HTTP {code}"
    if code == 403:
        if " cannot " in message and "forbidden:" in message:
            # The verb the server checked: a server-side apply that creates is a patch here, a create there.
            denied = _DENIED.search(message)
            verb, resource = (denied.group(1), denied.group(2)) if denied else (verb, resource)
            return Forbidden(f"the proxy's credentials may not {verb} {resource}: {message}")
        # Pod Security admission, quotas and webhooks also answer 403.
        return Rejected(message)
    if code == 404:
        details = status.get("details") or {}
        if details.get("kind") == "namespaces":
            return NamespaceMissing(f"the namespace {details.get('name')!r} does not exist (k8s_mode.namespace): "
                                    "create it, or point k8s_mode.namespace at one that does", retry_after=retry_after)
        return NotFound(message)
    if code == 409:
        return Conflict(message)
    if code in (400, 422):
        return Rejected(message)
    if code == 401:
        return Forbidden(f"the API server rejected the proxy's credentials: {message}")
    return Unavailable(f"the API server answered {code} to {verb} {resource}: {message}", retry_after=retry_after)


def translate(exc: BaseException, verb: str, resource: str, retry_after: float = DEFAULT_RETRY_AFTER,
              timeout: float | None = None) -> BackendError:
    """A backend error for an exception raised while calling the API server."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, kr8s.ServerError) and exc.response is not None:
        try:
            body = exc.response.json()
        except ValueError:
            body = {}
        return _from_status(exc.response.status_code, body, verb, resource, retry_after)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, kr8s.APITimeoutError, httpx.TimeoutException)):
        within = f" within {timeout:g} s" if timeout else ""
        return Unavailable(f"the Kubernetes API server did not answer {verb} {resource}{within}",
                           retry_after=retry_after)
    if isinstance(exc, (httpx.TransportError, aiohttp.ClientError, OSError)):
        return Unavailable(f"the Kubernetes API server cannot be reached ({type(exc).__name__}: {exc})",
                           retry_after=retry_after)
    return Unavailable(f"{verb} {resource} failed: {exc}", retry_after=retry_after)


class Client:
    """Requests to one API server, counted in :attr:`calls`."""

    def __init__(self, api: kr8s.asyncio.Api, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 token: TokenFile | None = None, *,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, retry_after: float = DEFAULT_RETRY_AFTER,
                 health: ApiHealth | None = None, transport: Transport | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.api = api
        self.transport: Transport = transport if transport is not None else AiohttpTransport(api)
        """Sends the calls and opens the watches, with kr8s's credentials (see :mod:`.transport`)."""
        self.headers = dict(headers or {})
        """Headers of every call, watches included (``Impersonate-User``, say)."""
        self.calls = 0
        self.token = token
        """The ServiceAccount's token file when in-cluster credentials are used, else None."""
        self.request_timeout = request_timeout
        self.retry_after = retry_after
        self.health = health
        """Told of every answer; while it says the server is silent, calls fail at once."""
        self.max_in_flight = max_in_flight

    @property
    def max_in_flight(self) -> int:
        """Calls under way at once at most (watches and health checks aside); more wait their turn."""
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        # A burst of creates (each several calls) queues here rather than timing out waiting for
        # one of the HTTP pool's connections, or opening more than the pool keeps alive.
        self._max_in_flight = value
        self._in_flight = asyncio.Semaphore(value)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None, *,
                      service_account: str = SERVICE_ACCOUNT_DIR,
                      token_reload_period: float = TOKEN_RELOAD_PERIOD, **options: Any) -> Client:
        """A client from a kubeconfig file (``kubeconfig``, $KUBECONFIG, ~/.kube/config) or, in a pod
        without one, the mounted ServiceAccount (``service_account``, its token read again as it rotates);
        ``options`` are the constructor's timeouts and health."""
        sa_dir = service_account_dir(kubeconfig, service_account)
        try:
            api = await kr8s.asyncio.api(kubeconfig=kubeconfig, context=context,
                                         serviceaccount=str(sa_dir) if sa_dir else None)
        except (httpx.TransportError, OSError, kr8s.APITimeoutError) as exc:
            raise translate(exc, "connect to", "the API server") from None
        except Exception as exc:  # kr8s raises plain exceptions for unusable configs
            raise Unavailable(f"no usable Kubernetes credentials: {exc}") from None
        token = None
        if sa_dir is not None:
            token = TokenFile(sa_dir / "token", token_reload_period)
            log.info("in-cluster credentials: the ServiceAccount token of %s, API server %s", sa_dir, api.auth.server)
        return cls(api, token=token, **options)

    def require_answering(self) -> None:
        """Fail at once while the server has been silent too long (it has answered before)."""
        health = self.health
        if health is not None and health.silent():
            raise Unavailable(health.reason() or "the Kubernetes API server does not answer",
                              retry_after=self.retry_after)

    def _answered(self, status_code: int) -> None:
        if self.health is not None:
            if status_code < 500:
                self.health.answered()
            else:
                self.health.failed(f"HTTP {status_code}")

    def _failed(self, error: BackendError) -> BackendError:
        if self.health is not None:
            self.health.failed(error.message)
        return error

    def _headers(self, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(self.token.header() if self.token else {}), **self.headers, **(headers or {})}

    async def close(self) -> None:
        """Close the connections. The client stays usable: a later call connects again."""
        await self.transport.close()

    def _renewed(self, status: int, sent: Mapping[str, str]) -> bool:
        """After a 401 to a request sent with the headers ``sent``: whether the token is now
        another one (the request is worth repeating). The file is read again; another request
        may have read the new token already, while this one was under way with the old."""
        if status != 401 or self.token is None:
            return False
        self.token.reload()
        return self.token.header().get("Authorization") != sent.get("Authorization")

    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None, content_type: str = "application/json",
                      verb: str | None = None, resource: str = "", check_timeout: float | None = None
                      ) -> dict[str, Any]:
        """One call by absolute path (``/api/v1/...``); returns the JSON body. With ``check_timeout``
        it is a check of whether the server answers (see :class:`~.health.ApiHealth`): neither
        refused while the server is silent nor queued behind other calls, and bounded by that timeout."""
        timeout = self.request_timeout if check_timeout is None else check_timeout
        sent = {"Content-Type": content_type, **(headers or {})}
        data = None if body is None else json.dumps(body).encode()
        query, verb, resource = dict(params or {}), verb or method.lower(), resource or path
        if check_timeout is not None:
            raw = await self._request(method, path, query, sent, data, verb, resource, timeout)
        else:
            async with self._in_flight:
                self.require_answering()
                raw = await self._request(method, path, query, sent, data, verb, resource, timeout)
        # Parsed once answered: parsing a list of thousands takes this process seconds, which are
        # no silence of the server's (nor time taken from another call's turn).
        return _json_bytes(raw)

    async def _request(self, method: str, path: str, params: dict[str, str], headers: dict[str, str],
                       data: bytes | None, verb: str, resource: str, timeout: float) -> bytes:
        """The body of the answer; an error status raised as a backend error with the server's
        message, after one repeat of a 401 whose token has been renewed since."""
        for attempt in range(2):
            self.calls += 1
            sent = self._headers(headers)
            try:
                async with asyncio.timeout(timeout):
                    status, raw = await self.transport.request(method, path, params, sent, data, timeout)
            except Exception as exc:
                raise self._failed(translate(exc, verb, resource, self.retry_after, timeout)) from None
            self._answered(status)
            if status < 400:
                return raw
            if attempt == 0 and self._renewed(status, sent):
                continue
            raise _from_status(status, _json_bytes(raw), verb, resource, self.retry_after)
        raise AssertionError("unreachable")

    async def text(self, path: str, *, params: Mapping[str, str] | None = None, verb: str = "get",
                   resource: str = "") -> str:
        """A GET whose answer is plain text (pod logs)."""
        self.require_answering()
        raw = await self._request("GET", path, dict(params or {}), {}, None, verb, resource or path,
                                  self.request_timeout)
        return raw.decode(errors="replace")

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False,
                    dry_run: bool = False, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Apply ``obj`` as ``kubectl apply --server-side`` does and return the object the server
        stored (or would store, with ``dry_run``): the PATCH of content type
        ``application/apply-patch+yaml`` (JSON is YAML) with a field manager, and optionally
        ``force`` and ``dryRun=All`` (kr8s has no apply of its own)."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        if dry_run:
            params["dryRun"] = "All"
        return await self.request("PATCH", path_of(obj), body=obj, params=params, headers=headers,
                                  content_type="application/apply-patch+yaml", verb="patch",
                                  resource=kind_of(obj).plural)

    async def get(self, path: str, *, resource: str = "") -> dict[str, Any] | None:
        """The object at ``path``, or None when there is none."""
        try:
            return await self.request("GET", path, verb="get", resource=resource)
        except NotFound:
            return None

    async def delete(self, path: str, *, propagation: str = "Background", resource: str = "",
                     resource_version: str | None = None) -> bool:
        """Delete an object; False when it was already gone. With ``resource_version``, only that
        version of it: :class:`~..base.Conflict` when it changed since."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        try:
            await self.request("DELETE", path, body=options, verb="delete", resource=resource)
        except NotFound:
            return False
        return True

    @asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, str], read_timeout: float) -> AsyncIterator[AsyncIterator[bytes]]:
        """Lines of a watch response; one that stays silent longer than ``read_timeout`` ends
        (see :mod:`.transport`). Every line counts as an answer of the server."""
        self.require_answering()
        self.calls += 1
        sent = self._headers()
        try:
            async with self.transport.open(path, params, sent, connect_timeout=self.request_timeout,
                                         read_timeout=read_timeout) as resp:
                self._answered(resp.status)
                if resp.status >= 400:
                    body = await resp.error_body()
                    if resp.status == 410:
                        raise Gone(body.decode(errors="replace"))
                    self._renewed(resp.status, sent)  # the watch is started again by its caller
                    raise _from_status(resp.status, _json_bytes(body), "watch", path.rsplit("/", 1)[-1],
                                       self.retry_after)
                yield self._lines(resp.lines())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise translate(exc, "watch", path.rsplit("/", 1)[-1], self.retry_after) from None

    async def _lines(self, lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for line in lines:
            if self.health is not None:
                self.health.answered()
            yield line


def _json_bytes(body: bytes) -> Any:
    """The JSON of an answer's body; a body that is none, its first 500 characters as the message."""
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {"message": body.decode(errors="replace")[:500]}
