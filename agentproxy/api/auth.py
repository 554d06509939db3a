"""API keys: who is calling, and which agents they may see.

Keys are configured as SHA-256 hex digests, never in clear. A request presents
its key as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Each key acts
for a user (its ``user``, else its name) in groups (its own ``groups`` and those
``teams.groups`` gives the user); each agent is owned by the user whose key created
it and may be shared with one of the owner's groups. A non-admin sees and reaches
its own agents and those shared with its groups, and manages (deletes) only its
own; an admin (``admin: true``, or a member of ``teams.admin_group``) sees and
manages all. Without any key configured every request is
allowed (and the server refuses to listen on anything but loopback unless told
otherwise, see :func:`check_bind`).

With sign-in (``server.oidc``) a request may instead present the provider's ID or access token
as ``Authorization: Bearer JWT``, or the dashboard's session cookie; the token's user and groups
claims name the caller as a key's ``user`` and ``groups`` do (see :mod:`agentproxy.teams.tokens`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..apikeys import ApiKey, hash_key, parse_api_keys
from ..backends.base import AgentState
from ..teams.config import Teams
from ..teams.oidc import CSRF_HEADER, SESSION_COOKIE, Identity, TokenRefused, looks_like_jwt
from ..teams.tokens import MAX_REMEMBERED, ProviderUnreachable, TokenVerifier
from ..waiting import REPORT_PATH
from .errors import ApiError, Handler
from .ui import OPEN_PATHS as DASHBOARD_PATHS

__all__ = ["ANONYMOUS", "ApiKey", "Authenticator", "BindRefused", "OPEN_PATHS", "PRINCIPAL", "Principal",
           "check_bind", "hash_key", "is_loopback_host", "principal_of"]

OPEN_PATHS = frozenset({"/healthz", "/readyz", REPORT_PATH}) | DASHBOARD_PATHS
"""Paths answered without a key (the dashboard's files ask for one themselves; the hooks' reports
carry their pod's token instead, see :mod:`.hooks`)."""

_RequestKey = getattr(web, "RequestKey", None)  # aiohttp >= 3.13
PRINCIPAL: Any = _RequestKey("agentproxy.principal", object) if _RequestKey else "agentproxy.principal"
"""Key of the :class:`Principal` in a request's mapping (``None`` on the open paths)."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user (``None`` when no keys are configured), its role, its
    groups and the key it presented (for the audit log)."""

    name: str | None
    admin: bool
    groups: frozenset[str] = frozenset()
    key: str | None = None

    def can_see(self, state: AgentState) -> bool:
        """True when this caller may see and reach the agent: its own, or one shared with a
        group of its."""
        if self.admin or state.spec.owner == self.name:
            return True
        group = state.spec.group
        return group is not None and group in self.groups

    def can_manage(self, state: AgentState) -> bool:
        """True when this caller may delete the agent: its owner and admins."""
        return self.admin or state.spec.owner == self.name


ANONYMOUS = Principal(None, True)
"""The caller when no keys are configured: sees everything, owns nothing."""


class Authenticator:
    """Checks the key of each request against the configured digests.

    Raises ``ValueError`` (an :class:`~agentproxy.apikeys.ApiKeyError`) for keys that break a rule."""

    def __init__(self, keys: Iterable[ApiKey | Mapping[str, Any]] = (), teams: Teams | None = None,
                 tokens: TokenVerifier | None = None) -> None:
        self.keys = parse_api_keys(keys)
        self.teams = teams or Teams()
        self.tokens = tokens
        """The provider's token checks when sign-in is configured."""
        # By digest: a request's key is found with one hash and one dictionary read, whatever the
        # number of keys. What a lookup's timing could tell is about the SHA-256 of the key, from
        # which nothing about the key itself follows.
        self._digests = {bytes.fromhex(k.sha256): principal_of_key(k, self.teams) for k in self.keys}
        self._principals: dict[Identity, Principal] = {}
        self.open_requests: list[Callable[[web.Request], bool]] = []
        """Tests of further requests answered without a key (an optional API layer adds its own)."""

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured, or sign-in."""
        return bool(self._digests) or self.tokens is not None

    def principal_of_identity(self, identity: Identity) -> Principal:
        """The caller a checked token names: its user, the token's groups and those of
        ``teams.groups``, admin by membership of ``teams.admin_group``.

        Remembered per identity (as many as the verifier remembers tokens, the oldest forgotten
        first), as a key's caller is made once: the relay's fast path asks on every request of a
        token checked before, and making it again cost more than the rest of the look-up."""
        known = self._principals.get(identity)
        if known is None:
            groups = identity.groups | self.teams.groups_of(identity.user)
            admin = self.teams.admin_group is not None and self.teams.admin_group in groups
            known = self._principals[identity] = Principal(identity.user, admin, groups, "oidc")
            if len(self._principals) > MAX_REMEMBERED:
                del self._principals[next(iter(self._principals))]
        return known

    async def identify(self, request: web.Request) -> Principal:
        """The caller of ``request``: by API key, by bearer token or by session cookie; else
        :class:`ApiError` 401 (403 for a cookie request that changes something without the
        header that proves it came from this proxy's own pages)."""
        if self.tokens is None:
            return self.principal(request)
        headers = request.headers
        token = presented_key(headers.get("Authorization"), headers.get("X-API-Key"))
        if token is not None:
            if _utf8(token) is not None and hashlib.sha256(token.encode()).digest() in self._digests:
                return self._digests[hashlib.sha256(token.encode()).digest()]
            if looks_like_jwt(token):
                return await self._checked(token, "Authorization")
            if self._digests:
                return self.principal(request)  # the key's own errors
            raise _unauthorized("the bearer token is neither a token of the identity provider nor an API key")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            if request.method not in ("GET", "HEAD", "OPTIONS") and CSRF_HEADER not in headers:
                raise ApiError(403, f"a request signed in by the session cookie must carry the {CSRF_HEADER} header "
                                    "(the dashboard sends it; other sites cannot)", code="csrf", field=CSRF_HEADER)
            return await self._checked(cookie, SESSION_COOKIE)
        raise _unauthorized("sign in (GET /auth/login, or `agentproxy login`), or present an API key "
                            "(Authorization: Bearer KEY or X-API-Key: KEY)")

    async def _checked(self, token: str, field: str) -> Principal:
        assert self.tokens is not None
        try:
            identity = await self.tokens.verify(token)
        except TokenRefused as exc:
            raise ApiError(401, str(exc), code=f"token_{exc.reason}", field=field,
                           headers={"WWW-Authenticate": 'Bearer realm="agentproxy", error="invalid_token"'}) from None
        except ProviderUnreachable as exc:
            raise ApiError(503, f"the identity provider cannot be reached to check the token: {exc}",
                           code="provider_unreachable", headers={"Retry-After": "5"}) from None
        return self.principal_of_identity(identity)

    def principal(self, request: web.Request) -> Principal:
        """The caller of ``request``, or :class:`ApiError` 401."""
        if not self._digests:
            return ANONYMOUS
        headers = request.headers
        authorization, api_key = headers.get("Authorization"), headers.get("X-API-Key")
        token = presented_key(authorization, api_key)
        if token is None:
            raise _unauthorized("an API key is required (Authorization: Bearer KEY or X-API-Key: KEY)")
        raw = _utf8(token)
        if raw is None:
            # aiohttp reads header bytes that are not UTF-8 as lone surrogates ("surrogateescape");
            # no configured key can be such bytes, and hashing them would fail.
            header = "Authorization" if token == presented_key(authorization, None) else "X-API-Key"
            raise _unauthorized(f"{header}: {KEY_RULE}", field=header)
        found = self._digests.get(hashlib.sha256(raw).digest())
        if found is None:
            raise _unauthorized("the API key is not valid")
        return found

    def holder(self, authorization: str | None, api_key: str | None) -> Principal | None:
        """The caller presenting these header values, or None when the key is missing or not valid.

        The values are the header bytes as they came, each byte one character (decoded as
        Latin-1, as the fast path reads a head): the key is looked up by those very bytes, and a
        key that is not UTF-8 text is no key (None), as :meth:`principal` judges it."""
        if not self.enabled:
            return ANONYMOUS
        token = presented_key(authorization, api_key)
        if token is None:
            return None
        try:
            raw = token.encode("latin-1")
            raw.decode("utf-8")
        except UnicodeError:
            return None
        found = self._digests.get(hashlib.sha256(raw).digest())
        if found is None and self.tokens is not None:
            # Only a token aiohttp's path has checked before: the fast path cannot wait for the
            # provider's keys, so any other token is handed over to be checked there.
            identity = self.tokens.cached(token)
            if identity is not None:
                return self.principal_of_identity(identity)
        return found

    def middleware(self) -> Any:
        """The aiohttp middleware that stores the caller under :data:`PRINCIPAL`."""
        enabled = self.enabled

        @web.middleware
        async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not enabled:
                request[PRINCIPAL] = ANONYMOUS
            elif request.path in OPEN_PATHS or any(is_open(request) for is_open in self.open_requests):
                request[PRINCIPAL] = None
            else:
                request[PRINCIPAL] = await self.identify(request)
            return await handler(request)

        return auth_middleware


def principal_of_key(key: ApiKey, teams: Teams) -> Principal:
    """The caller presenting ``key``: its user, the groups of the key and of ``teams.groups``,
    admin by the key's role or by membership of ``teams.admin_group``."""
    groups = frozenset(key.groups) | teams.groups_of(key.owner)
    admin = key.admin or (teams.admin_group is not None and teams.admin_group in groups)
    return Principal(key.owner, admin, groups, key.name)


def principal_of(request: web.Request) -> Principal:
    """The caller of a request that passed the auth middleware."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise _unauthorized("an API key is required (Authorization: Bearer KEY or X-API-Key: KEY)")
    return principal


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request presents in its ``Authorization: Bearer`` or ``X-API-Key`` header value."""
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if api_key is not None and api_key.strip():
        return api_key.strip()
    return None


KEY_RULE = "the API key must be UTF-8 text"
"""The rule a presented key's bytes break when they are not UTF-8."""


def _utf8(token: str) -> bytes | None:
    """The UTF-8 bytes of a key read by aiohttp, or None when its bytes were not UTF-8."""
    try:
        return token.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _unauthorized(message: str, field: str | None = None) -> ApiError:
    return ApiError(401, message, field=field, headers={"WWW-Authenticate": 'Bearer realm="agentproxy"'})


def is_loopback_host(host: str) -> bool:
    """True when binding ``host`` listens on loopback only."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BindRefused(ValueError):
    """Listening on a non-loopback address without API keys was not explicitly allowed."""


def check_bind(host: str, auth: Authenticator, allow_unauthenticated_remote: bool = False) -> None:
    """Refuse to serve an open API beyond this machine unless explicitly allowed."""
    if auth.enabled or allow_unauthenticated_remote or is_loopback_host(host):
        return
    raise BindRefused(
        f"refusing to listen on {host!r} without API keys: anyone who reaches it could run agents. "
        "Configure server.api_keys, bind a loopback address (127.0.0.1), or set "
        "server.allow_unauthenticated_remote=true to allow it anyway")
