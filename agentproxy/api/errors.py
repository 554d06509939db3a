"""JSON error bodies and the middleware that turns every failure into one.

Every error the API answers is ``{"error": {"code", "message", "field"?}}``:
a client never sees a traceback or an HTML page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ..backends.base import BackendError
from ..spec import SpecError

log = logging.getLogger("agentproxy.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}
"""The ``code`` of an error answered with a given HTTP status, unless a more precise one is known."""

_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ApiError(Exception):
    """An error the API answers as is: an HTTP status, a code, a message and maybe a field."""

    def __init__(self, status: int, message: str, *, code: str | None = None, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.field = field
        self.headers = headers
        super().__init__(message)

    def response(self) -> web.Response:
        """The JSON response of this error."""
        return error_response(self.status, self.code, self.message, field=self.field, headers=self.headers)


def error_body(code: str, message: str, field: str | None = None) -> dict:
    """The JSON document of an error."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON error response."""
    return web.Response(status=status, body=json.dumps(error_body(code, message, field)).encode(),
                        content_type="application/json", headers=headers)


def spec_error(exc: SpecError) -> ApiError:
    """The API error of an invalid create request: 400 for a malformed id, 422 for other values."""
    if exc.kind == "invalid":
        return ApiError(400, str(exc), code="invalid", field=exc.field)
    return ApiError(422, str(exc), code="unprocessable", field=exc.field)


def backend_error(exc: BackendError) -> ApiError:
    """The API error of a backend failure, with the status and code the backend chose, and
    ``Retry-After`` when the backend knows when trying again may succeed."""
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if exc.retry_after is not None else None
    return ApiError(exc.http_status, exc.message, code=exc.code, field=exc.field, headers=headers)


def http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body too large, ...) as JSON."""
    if exc.status == 404:
        message = f"no resource at {request.path}"
    elif exc.status == 405:
        message = f"method {request.method} is not allowed here; allowed: {exc.headers.get('Allow', 'none')}"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        message = exc.text
    else:
        message = exc.reason
    kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    return error_response(exc.status, CODES.get(exc.status, "error"), message, headers=kept)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every exception a handler raises with a JSON error; log unexpected ones."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except BackendError as exc:
        if exc.http_status >= 500:
            log.warning("%s %s: backend error: %s", request.method, request.path, exc.message)
        return backend_error(exc).response()
    except SpecError as exc:
        return spec_error(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception(request, exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        return error_response(500, "internal", "internal error; the server log has the details")
