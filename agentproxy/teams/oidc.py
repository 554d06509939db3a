"""OpenID Connect, the pure part: the ``server.oidc`` settings as one value, who a token's claims
name (user and groups), and the pieces of an authorization request with PKCE (RFC 7636).

The I/O (discovery, the provider's keys, checking a token) is in :mod:`.tokens`; the sign-in
routes are in :mod:`.signin`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..apikeys import name_problem

SESSION_COOKIE = "agentproxy_session"
"""The dashboard's session: the ID token of its sign-in (HttpOnly, SameSite=Lax)."""
SIGNIN_COOKIE = "agentproxy_signin"
"""The state, nonce and PKCE verifier of a sign-in under way (HttpOnly, path /auth/, 10 minutes)."""
CSRF_HEADER = "X-Requested-With"
"""A request authenticated by the session cookie that changes anything must carry this header: a
page of another site cannot add it without a CORS preflight, which this proxy never grants."""

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""Signature algorithms a token may use: a provider's public keys only (never ``none``, never a
shared-secret HMAC, which would let anyone with the client's secret mint tokens)."""


@dataclass(frozen=True)
class OidcConfig:
    """The ``server.oidc`` settings, resolved: audiences and scopes as tuples, the CLI's client."""

    issuer: str
    client_id: str
    cli_client_id: str
    audiences: tuple[str, ...]
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    client_secret_env: str | None = None
    public_url: str | None = None
    jwks_cache: float = 300.0
    jwks_min_refresh: float = 10.0
    leeway: float = 10.0

    @property
    def discovery_url(self) -> str:
        """Where the provider's configuration is (OpenID Connect Discovery 1.0, section 4)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def oidc_config(settings: Any) -> OidcConfig | None:
    """The :class:`OidcConfig` of ``settings`` (checked when they were loaded), or None when sign-in is off."""
    section = settings.server.oidc
    if not section.issuer:
        return None
    cli = section.cli_client_id or section.client_id
    audiences = tuple(a.strip() for a in (section.audiences or "").split(",") if a.strip())
    return OidcConfig(
        issuer=section.issuer, client_id=section.client_id, cli_client_id=cli,
        audiences=audiences or tuple(dict.fromkeys((section.client_id, cli))),
        username_claim=section.username_claim, groups_claim=section.groups_claim,
        scopes=tuple(section.scopes.split()), client_secret_env=section.client_secret_env,
        public_url=section.public_url.rstrip("/") if section.public_url else None,
        jwks_cache=section.jwks_cache, jwks_min_refresh=section.jwks_min_refresh, leeway=section.leeway)


class TokenRefused(Exception):
    """A token that does not sign anyone in; ``reason`` is a short code (``expired``,
    ``audience``, ``issuer``, ``signature``, ``unknown_key``, ``malformed``, ``claims``,
    ``not_yet_valid``, ``nonce``) and the message says what is wrong without echoing the token."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Identity:
    """Who a checked token names: the user, their groups from the token, and when it expires."""

    user: str
    groups: frozenset[str]
    expires: float
    subject: str


def identity_of(claims: Mapping[str, Any], config: OidcConfig) -> Identity:
    """The :class:`Identity` of a token's checked claims, or :class:`TokenRefused` when the user
    claim is missing or not a valid user name. Group names that are not valid names (e.g. a path
    such as ``/org/ml``) are left out: they could name no group of the settings anyway."""
    user = claims.get(config.username_claim)
    if user is None:
        raise TokenRefused("claims", f"the token has no {config.username_claim!r} claim (server.oidc.username_claim)")
    problem = name_problem(user)
    if problem is not None:
        raise TokenRefused("claims", f"the token's {config.username_claim!r} claim {problem}")
    raw = claims.get(config.groups_claim) or []
    if isinstance(raw, str):
        raw = [raw]
    groups = frozenset(g for g in raw if isinstance(g, str) and name_problem(g) is None) if isinstance(
        raw, (list, tuple)) else frozenset()
    exp = claims.get("exp")
    return Identity(user, groups, float(exp) if isinstance(exp, (int, float)) else 0.0, str(claims.get("sub", "")))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SignInRequest:
    """One authorization request's secrets: ``state`` (ties the callback to this browser),
    ``nonce`` (ties the ID token to this request) and the PKCE ``verifier``."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> SignInRequest:
        """Fresh random values (the verifier: 43 characters, RFC 7636's minimum length of entropy)."""
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(32))

    @property
    def challenge(self) -> str:
        """The S256 code challenge of the verifier."""
        return _b64(hashlib.sha256(self.verifier.encode("ascii")).digest())

    def url(self, authorization_endpoint: str, client_id: str, redirect_uri: str, scopes: tuple[str, ...]) -> str:
        """The provider's authorization URL for this request (code flow, S256 challenge)."""
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                           "scope": " ".join(scopes), "state": self.state, "nonce": self.nonce,
                           "code_challenge": self.challenge, "code_challenge_method": "S256"})
        separator = "&" if "?" in authorization_endpoint else "?"
        return f"{authorization_endpoint}{separator}{query}"


def looks_like_jwt(token: str) -> bool:
    """True when ``token`` has a JWT's form (three base64url parts); API keys are looked up first."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2]) and token.startswith("eyJ")


def safe_next(value: str | None) -> str:
    """Where to send the browser after sign-in: a path of this proxy (``/...`` but not ``//...``,
    which a browser reads as another host), else the dashboard."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
