"""A thin layer over kr8s: every API call of the k8s backend goes through here,
so errors become backend errors with the server's own message, and calls are counted."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

import httpx
import kr8s
import kr8s.asyncio

from ..base import BackendError, Conflict, Forbidden, NotFound, Rejected, Unavailable
from .kinds import kind_of, path_of

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = httpx.Timeout(30.0, pool=60.0)


class Gone(Exception):
    """The resourceVersion a watch asked for is too old (HTTP 410): relist."""


def _from_status(code: int, body: Any, verb: str, resource: str) -> BackendError:
    """A backend error for an API answer with an error status: RBAC names the
    verb and resource; admission, quota and validation messages pass through."""
    status = body if isinstance(body, dict) else {}
    message = status.get("message") or f"HTTP {code}"
    if code == 403:
        if " cannot " in message and "forbidden:" in message:
            return Forbidden(f"the proxy's credentials may not {verb} {resource}: {message}")
        # Pod Security admission, quotas and webhooks also answer 403.
        return Rejected(message)
    if code == 404:
        return NotFound(message)
    if code == 409:
        return Conflict(message)
    if code in (400, 422):
        return Rejected(message)
    if code == 401:
        return Forbidden(f"the API server rejected the proxy's credentials: {message}")
    return Unavailable(f"the API server answered {code} to {verb} {resource}: {message}")


def translate(exc: BaseException, verb: str, resource: str) -> BackendError:
    """A backend error for an exception raised while calling the API server."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, kr8s.ServerError) and exc.response is not None:
        try:
            body = exc.response.json()
        except ValueError:
            body = {}
        return _from_status(exc.response.status_code, body, verb, resource)
    if isinstance(exc, (kr8s.APITimeoutError, httpx.TransportError, OSError)):
        return Unavailable(f"the Kubernetes API server cannot be reached ({type(exc).__name__}: {exc})")
    return Unavailable(f"{verb} {resource} failed: {exc}")


class Client:
    """Requests to one API server, counted in :attr:`calls`."""

    def __init__(self, api: kr8s.asyncio.Api, max_in_flight: int = 32) -> None:
        self.api = api
        self.calls = 0
        # A burst of creates (each several calls) must queue here rather than
        # time out waiting for one of the HTTP pool's connections.
        self._in_flight = asyncio.Semaphore(max_in_flight)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> "Client":
        """A client from a kubeconfig file (or $KUBECONFIG, or in-cluster credentials)."""
        try:
            api = await kr8s.asyncio.api(kubeconfig=kubeconfig, context=context)
        except (httpx.TransportError, OSError, kr8s.APITimeoutError) as exc:
            raise translate(exc, "connect to", "the API server") from None
        except Exception as exc:  # kr8s raises plain exceptions for unusable configs
            raise Unavailable(f"no usable Kubernetes credentials: {exc}") from None
        return cls(api)

    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None, content_type: str = "application/json",
                      verb: str | None = None, resource: str = "") -> dict[str, Any]:
        """One call by absolute path (``/api/v1/...``); returns the JSON body."""
        base, _, rest = path.lstrip("/").partition("/")
        kwargs: dict[str, Any] = {"params": dict(params or {}), "timeout": REQUEST_TIMEOUT,
                                  "headers": {"Content-Type": content_type, **(headers or {})}}
        if body is not None:
            kwargs["content"] = json.dumps(body)
        async with self._in_flight:
            return await self._request(method, base, rest, kwargs, verb or method.lower(), resource or path)

    async def _request(self, method: str, base: str, rest: str, kwargs: dict[str, Any], verb: str,
                       resource: str) -> dict[str, Any]:
        self.calls += 1
        # raise_for_status=False: kr8s answers a 403 by re-authenticating and
        # replacing its HTTP session, which would cut every watch stream on it;
        # a 403 here is an RBAC or admission verdict, not stale credentials.
        try:
            async with self.api.call_api(method, version="", base=f"/{base}", url=rest,
                                         raise_for_status=False, **kwargs) as resp:
                body = _json(resp)
                if resp.is_error:
                    raise _from_status(resp.status_code, body, verb, resource)
                return body
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, verb, resource) from None

    async def text(self, path: str, *, params: Mapping[str, str] | None = None, verb: str = "get",
                   resource: str = "") -> str:
        """A GET whose answer is plain text (pod logs)."""
        base, _, rest = path.lstrip("/").partition("/")
        self.calls += 1
        try:
            async with self.api.call_api("GET", version="", base=f"/{base}", url=rest, params=dict(params or {}),
                                         timeout=REQUEST_TIMEOUT, raise_for_status=False) as resp:
                if resp.is_error:
                    raise _from_status(resp.status_code, _json(resp), verb, resource or path)
                return resp.text
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, verb, resource or path) from None

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False,
                    dry_run: bool = False, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Apply ``obj`` as ``kubectl apply --server-side`` does and return the object the server
        stored (or would store, with ``dry_run``): the PATCH of content type
        ``application/apply-patch+yaml`` (JSON is YAML) with a field manager, and optionally
        ``force`` and ``dryRun=All``. kr8s has no apply of its own; its ``call_api`` sends it."""
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

    async def delete(self, path: str, *, propagation: str = "Background", resource: str = "") -> bool:
        """Delete an object; False when it was already gone."""
        try:
            await self.request("DELETE", path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                     "propagationPolicy": propagation},
                               verb="delete", resource=resource)
        except NotFound:
            return False
        return True

    @asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, str], read_timeout: float) -> AsyncIterator[AsyncIterator[str]]:
        """Lines of a watch response; a silence longer than ``read_timeout`` ends it with an error."""
        base, _, rest = path.lstrip("/").partition("/")
        timeout = httpx.Timeout(30.0, read=read_timeout, pool=60.0)
        self.calls += 1
        async with self.api.call_api("GET", version="", base=f"/{base}", url=rest, params=dict(params),
                                     stream=True, timeout=timeout, raise_for_status=False) as resp:
            if resp.is_error:
                await resp.aread()
                if resp.status_code == 410:
                    raise Gone(resp.text)
                raise _from_status(resp.status_code, _json(resp), "watch", path.rsplit("/", 1)[-1])
            yield resp.aiter_lines()


def _json(resp: httpx.Response) -> Any:
    if not resp.content:
        return {}
    try:
        return resp.json()
    except ValueError:
        return {"message": resp.text[:500]}
