"""Sign-in routes: the dashboard's authorization code flow with PKCE, and what the CLI needs.

- ``GET /auth/config``: the provider's issuer, the CLI's client id and the scopes (for
  ``agentproxy login``); 404 when sign-in is off.
- ``GET /auth/login?next=/ui/``: a fresh state, nonce and PKCE verifier in a short-lived
  HttpOnly cookie, and a redirect to the provider's authorization endpoint.
- ``GET /auth/callback``: the code exchanged (with the verifier, and the client's secret when
  it has one), the ID token checked (signature, issuer, audience, expiry, nonce) and kept as the
  session cookie (HttpOnly, SameSite=Lax, Secure over TLS); then back to ``next``.
- ``POST /auth/logout``: the session cookie cleared.
- ``GET /auth/me``: who the caller is (user, groups, admin), whatever signed it in.

The client's secret is read from its environment variable at each exchange and goes nowhere
but the token request's Authorization header.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ..api.auth import PRINCIPAL, Authenticator, principal_of
from ..api.errors import ApiError
from .oidc import SESSION_COOKIE, SIGNIN_COOKIE, OidcConfig, SignInRequest, TokenRefused, safe_next
from .tokens import ProviderUnreachable, TokenVerifier

OPEN = frozenset({"/auth/config", "/auth/login", "/auth/callback", "/auth/logout"})
"""Sign-in paths answered without a key or token."""
SIGNIN_SECONDS = 600
"""How long a sign-in may take between the redirect to the provider and the callback."""


class SignInRoutes:
    """The ``/auth/...`` routes of one app."""

    def __init__(self, config: OidcConfig, tokens: TokenVerifier, auth: Authenticator) -> None:
        self.config = config
        self.tokens = tokens
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/auth/config", self.client_config, allow_head=False),
                web.get("/auth/login", self.login, allow_head=False),
                web.get("/auth/callback", self.callback, allow_head=False),
                web.post("/auth/logout", self.logout),
                web.get("/auth/me", self.me, allow_head=False)]

    @staticmethod
    def is_open(request: web.Request) -> bool:
        """True for the sign-in paths that need no caller."""
        return request.path in OPEN

    async def _discovery(self) -> Any:
        try:
            return await self.tokens.discovery()
        except ProviderUnreachable as exc:
            raise ApiError(503, f"the identity provider cannot be reached: {exc}", code="provider_unreachable",
                           headers={"Retry-After": "5"}) from None

    def _base(self, request: web.Request) -> str:
        return self.config.public_url or f"{request.scheme}://{request.host}"

    def _secure(self, request: web.Request) -> bool:
        return request.secure or (self.config.public_url or "").startswith("https://")

    async def client_config(self, request: web.Request) -> web.Response:
        """``GET /auth/config``: what ``agentproxy login`` needs (nothing secret)."""
        return web.json_response({"issuer": self.config.issuer, "client_id": self.config.cli_client_id,
                                  "scopes": list(self.config.scopes)})

    async def login(self, request: web.Request) -> web.Response:
        """``GET /auth/login``: to the provider, with this sign-in's secrets kept in a cookie."""
        discovery = await self._discovery()
        attempt = SignInRequest.new()
        redirect_uri = self._base(request) + "/auth/callback"
        kept = {"state": attempt.state, "nonce": attempt.nonce, "verifier": attempt.verifier,
                "next": safe_next(request.query.get("next")), "redirect_uri": redirect_uri}
        response = _redirect(attempt.url(str(discovery["authorization_endpoint"]), self.config.client_id,
                                         redirect_uri, self.config.scopes))
        response.set_cookie(SIGNIN_COOKIE, base64.urlsafe_b64encode(json.dumps(kept).encode()).decode(),
                            max_age=SIGNIN_SECONDS, path="/auth/", httponly=True, samesite="Lax",
                            secure=self._secure(request))
        return response

    def _kept(self, request: web.Request) -> dict[str, str]:
        raw = request.cookies.get(SIGNIN_COOKIE)
        try:
            kept = json.loads(base64.urlsafe_b64decode(raw.encode())) if raw else None
        except (ValueError, UnicodeError):
            kept = None
        if not isinstance(kept, dict) or not all(isinstance(kept.get(k), str) for k in (
                "state", "nonce", "verifier", "next", "redirect_uri")):
            raise ApiError(400, "no sign-in is under way in this browser (or it took longer than 10 minutes): "
                                "start again at /auth/login", code="signin_expired", field=SIGNIN_COOKIE)
        return kept

    async def callback(self, request: web.Request) -> web.Response:
        """``GET /auth/callback``: the provider's answer, made a session."""
        query = request.query
        if "error" in query:
            # The provider's words, cut short: they are shown, never run.
            detail = " ".join(filter(None, (query.get("error", "")[:64], query.get("error_description", "")[:200])))
            raise ApiError(401, f"the identity provider refused the sign-in: {detail}", code="signin_refused")
        kept = self._kept(request)
        if query.get("state") != kept["state"]:
            raise ApiError(400, "the sign-in's state does not match this browser's: start again at /auth/login",
                           code="signin_state", field="state")
        code = query.get("code")
        if not code:
            raise ApiError(400, "code: the provider's answer has no code", code="invalid", field="code")
        id_token = await self._exchange(code, kept)
        try:
            identity = await self.tokens.verify(id_token, audiences=(self.config.client_id,), nonce=kept["nonce"])
        except TokenRefused as exc:
            raise ApiError(401, f"the provider's ID token is refused: {exc}", code=f"token_{exc.reason}") from None
        except ProviderUnreachable as exc:
            raise ApiError(503, f"the identity provider cannot be reached: {exc}", code="provider_unreachable",
                           headers={"Retry-After": "5"}) from None
        request[PRINCIPAL] = self.auth.principal_of_identity(identity)  # the audit log's "who"
        response = _redirect(kept["next"])
        max_age = max(1, int(identity.expires - self.tokens.clock())) if identity.expires else None
        response.set_cookie(SESSION_COOKIE, id_token, max_age=max_age, path="/", httponly=True, samesite="Lax",
                            secure=self._secure(request))
        response.del_cookie(SIGNIN_COOKIE, path="/auth/")
        return response

    async def _exchange(self, code: str, kept: dict[str, str]) -> str:
        """The ID token the provider gives for ``code``."""
        discovery = await self._discovery()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": kept["redirect_uri"],
                "code_verifier": kept["verifier"], "client_id": self.config.client_id}
        headers = {"Accept": "application/json"}
        if self.config.client_secret_env:
            secret = os.environ.get(self.config.client_secret_env)
            if not secret:
                raise ApiError(503, f"server.oidc.client_secret_env names {self.config.client_secret_env}, which "
                                    "is not set in the proxy's environment", code="misconfigured")
            # client_secret_basic: both parts form-encoded first (RFC 6749, section 2.3.1).
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{quote(self.config.client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session, session.post(
                    str(discovery["token_endpoint"]), data=form, headers=headers) as answer:
                status = answer.status
                body = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(503, f"the identity provider's token endpoint cannot be reached: {type(exc).__name__}",
                           code="provider_unreachable", headers={"Retry-After": "5"}) from None
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
        if status != 200 or not isinstance(document, dict) or not isinstance(document.get("id_token"), str):
            error = document.get("error") if isinstance(document, dict) else None
            raise ApiError(401, f"the identity provider did not exchange the code ({status}"
                                f"{', ' + str(error)[:64] if error else ''}): start again at /auth/login",
                           code="signin_refused")
        return str(document["id_token"])

    async def logout(self, request: web.Request) -> web.Response:
        """``POST /auth/logout``: forget the session cookie."""
        response = web.json_response({"signed_out": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        """``GET /auth/me``: the caller's user, groups and role."""
        principal = principal_of(request)
        return web.json_response({"user": principal.name, "groups": sorted(principal.groups),
                                  "admin": principal.admin, "via": "oidc" if principal.key == "oidc" else "api_key"})


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI paths of the sign-in routes (served when ``teams.oidc`` is configured)."""
    from ..api.openapi import OPEN, _errors, _json, _query

    redirect = {"description": "To the provider's sign-in page (login) or back to the dashboard (callback).",
                "headers": {"Location": {"description": "Where to go next.", "schema": {"type": "string"}}}}
    unreachable = {"503": _json({"$ref": "#/components/schemas/Error"}, "The identity provider cannot be reached.")}
    return {
        "/auth/config": {"get": {
            "operationId": "signInConfig", "summary": "The identity provider, for `agentproxy login`", **OPEN,
            "description": "The issuer, the CLI's client id and the scopes; nothing secret.",
            "responses": {"200": _json({"type": "object", "properties": {
                "issuer": {"type": "string"}, "client_id": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}}}}, "How to sign in.")}}},
        "/auth/login": {"get": {
            "operationId": "signIn", "summary": "Start a sign-in (authorization code flow with PKCE)", **OPEN,
            "description": "Keeps the sign-in's state, nonce and PKCE verifier in a short-lived HttpOnly "
                           "cookie and redirects to the provider.",
            "parameters": [_query("next", {"type": "string"}, "A path of this proxy to return to (default /ui/).")],
            "responses": {"302": redirect, **unreachable}}},
        "/auth/callback": {"get": {
            "operationId": "signInCallback", "summary": "The provider's answer to a sign-in", **OPEN,
            "description": "The code is exchanged and the ID token checked (issuer, audience, expiry, "
                           "signature, nonce); it becomes an HttpOnly session cookie.",
            "parameters": [_query("code", {"type": "string"}, "The provider's authorization code."),
                           _query("state", {"type": "string"}, "The sign-in's state.")],
            "responses": {"302": redirect, **_errors("400", "401"), **unreachable}}},
        "/auth/logout": {"post": {
            "operationId": "signOut", "summary": "Forget the session cookie", **OPEN,
            "responses": {"200": _json({"type": "object", "properties": {"signed_out": {"type": "boolean"}}},
                                       "Signed out.")}}},
        "/auth/me": {"get": {
            "operationId": "whoAmI", "summary": "Who the caller is",
            "description": "Signed in with the provider or with an API key.",
            "responses": {"200": _json({"type": "object", "properties": {
                "user": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}},
                "admin": {"type": "boolean"}, "via": {"type": "string", "enum": ["oidc", "api_key"]}}},
                "The caller."), **_errors("401")}}},
    }


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
