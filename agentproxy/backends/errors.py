"""The errors a backend raises, each with the HTTP status and code the API answers with.

They live apart from :mod:`.base` so that the pieces base builds on (limits, ...) can raise
them; :mod:`.base` re-exports them, where callers have always found them.
"""

from __future__ import annotations

__all__ = ["BackendError", "Conflict", "Forbidden", "NotFound", "Rejected", "SessionTaken", "TooMany", "Unavailable"]


class BackendError(Exception):
    """Base of the errors a backend raises; ``http_status`` is what the API answers."""

    http_status = 500
    code = "backend_error"
    retry_after: float | None = None
    """Seconds after which trying again may succeed (sent as ``Retry-After``), when known."""

    def __init__(self, message: str, *, field: str | None = None, retry_after: float | None = None) -> None:
        self.message = message
        self.field = field
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(message)


class NotFound(BackendError):
    http_status, code = 404, "not_found"


class Conflict(BackendError):
    """The agent exists with a different spec, or a field is owned by someone else."""

    http_status, code = 409, "conflict"


class Rejected(BackendError):
    """The platform refused the request (admission, quota, validation): its message is passed on."""

    http_status, code = 422, "rejected"


class Forbidden(BackendError):
    """The backend's own credentials lack a permission; names the verb and resource."""

    http_status, code = 403, "forbidden"


class SessionTaken(BackendError):
    """A create in a session that belongs to another owner (see :mod:`.ownership`)."""

    http_status, code = 403, "forbidden"


class Unavailable(BackendError):
    """The platform cannot be reached (API server down, no ports left, ...)."""

    http_status, code = 503, "unavailable"
    retry_after = 5.0


class TooMany(BackendError):
    """A limit of the service is reached (agents per session or owner, creates waiting)."""

    http_status, code = 429, "too_many"
