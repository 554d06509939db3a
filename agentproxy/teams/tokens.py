"""Checking the provider's tokens: discovery, its signing keys (JWKS) cached and read again when
they rotate, and each token's signature, issuer, audience, expiry and not-before (PyJWT).

A token once checked is remembered until it expires (or the keys are read again), so a client
that presents the same token on every request pays one dictionary read, not one signature check;
that cache is also what the relay's fast path reads (:meth:`TokenVerifier.cached`), since it
cannot wait for the provider.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import jwt

from .oidc import ASYMMETRIC_ALGORITHMS, Identity, OidcConfig, TokenRefused, identity_of

Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Reads a JSON document by URL (a test may count the readings)."""

MAX_REMEMBERED = 4096
"""Checked tokens kept; the oldest is forgotten first."""


class ProviderUnreachable(Exception):
    """The provider's configuration or keys could not be read."""


class TokenVerifier:
    """Checks tokens of one provider (see the module's docstring)."""

    def __init__(self, config: OidcConfig, fetch: Fetch | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._fetch = fetch or self._http_get
        self._session: aiohttp.ClientSession | None = None
        self._discovery: Mapping[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_read_at: float | None = None
        self._lock = asyncio.Lock()
        self._remembered: OrderedDict[str, Identity] = OrderedDict()
        self.key_readings = 0
        """How many times the keys were read (for tests and metrics)."""

    async def _http_get(self, url: str) -> Mapping[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.get(url, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise ProviderUnreachable(f"{url} answered {response.status}")
                document = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise ProviderUnreachable(f"{url}: {type(exc).__name__}: {exc}") from None
        if not isinstance(document, dict):
            raise ProviderUnreachable(f"{url} answered no JSON object")
        return document

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def discovery(self) -> Mapping[str, Any]:
        """The provider's configuration, read once; its issuer must be the configured one."""
        if self._discovery is None:
            document = await self._fetch(self.config.discovery_url)
            issuer = document.get("issuer")
            if not isinstance(issuer, str) or issuer.rstrip("/") != self.config.issuer.rstrip("/"):
                raise ProviderUnreachable(f"the provider's configuration names issuer {issuer!r}, not "
                                          f"{self.config.issuer!r} (server.oidc.issuer)")
            for name in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
                if not isinstance(document.get(name), str):
                    raise ProviderUnreachable(f"the provider's configuration has no {name}")
            self._discovery = document
        return self._discovery

    async def _read_keys(self) -> None:
        document = await self._fetch(str((await self.discovery())["jwks_uri"]))
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or not entry.get("kid"):
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key of a type this proxy cannot use: tokens it signed are refused
        self._keys = keys
        self._keys_read_at = self.clock()
        self.key_readings += 1
        # A token checked against a key that is gone must be checked again.
        self._remembered.clear()

    async def _key(self, kid: str) -> jwt.PyJWK:
        now = self.clock()
        async with self._lock:
            stale = self._keys_read_at is None or now - self._keys_read_at >= self.config.jwks_cache
            unknown = kid not in self._keys and (
                self._keys_read_at is None or now - self._keys_read_at >= self.config.jwks_min_refresh)
            if stale or unknown:
                await self._read_keys()
        key = self._keys.get(kid)
        if key is None:
            raise TokenRefused("unknown_key", f"the token is signed by key {kid[:64]!r}, which the issuer does "
                                              "not publish (a rotated-out or forged key)")
        return key

    def cached(self, token: str) -> Identity | None:
        """The identity of a token checked before and not expired since, without any I/O; else None."""
        identity = self._remembered.get(token)
        if identity is None:
            return None
        if identity.expires and self.clock() > identity.expires + self.config.leeway:
            self._remembered.pop(token, None)
            return None
        return identity

    async def verify(self, token: str, *, audiences: tuple[str, ...] | None = None,
                     nonce: str | None = None) -> Identity:
        """The identity a token names, or :class:`TokenRefused` saying why not (or
        :class:`ProviderUnreachable` when the keys cannot be read)."""
        if audiences is None and nonce is None:
            known = self.cached(token)
            if known is not None:
                return known
        algorithm, kid, claimed = _unverified(token)
        issuer = str((await self.discovery())["issuer"])
        if claimed != issuer:
            # Before any key is looked up: another issuer's tokens make no reading of this one's keys.
            raise TokenRefused("issuer", f"the token's issuer is not {issuer} (server.oidc.issuer)")
        key = await self._key(kid)
        if key.algorithm_name and key.algorithm_name != algorithm:
            raise TokenRefused("signature", f"the token's algorithm {algorithm} is not the one of its key "
                                            f"({key.algorithm_name})")
        accepted = audiences or self.config.audiences
        try:
            claims = jwt.decode(token, key.key, algorithms=[algorithm], audience=list(accepted), issuer=issuer,
                                leeway=self.config.leeway, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise _refusal(exc, accepted) from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRefused("nonce", "the ID token's nonce is not the one of this sign-in: start again")
        identity = identity_of(claims, self.config)
        if audiences is None and nonce is None:
            self._remembered[token] = identity
            while len(self._remembered) > MAX_REMEMBERED:
                self._remembered.popitem(last=False)
        return identity


def _unverified(token: str) -> tuple[str, str, Any]:
    """A token's algorithm, key id and claimed issuer, read before anything is checked."""
    try:
        header = jwt.get_unverified_header(token)
        claimed = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise TokenRefused("malformed", "the bearer token is not a JWT") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise TokenRefused("signature", f"the token's algorithm {str(algorithm)[:16]!r} is not accepted "
                                        f"(only {', '.join(ASYMMETRIC_ALGORITHMS)})")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("unknown_key", "the token names no signing key (kid)")
    return str(algorithm), kid, claimed


def _refusal(exc: Exception, accepted: tuple[str, ...]) -> TokenRefused:
    """What PyJWT's refusal of a signed token means, in the proxy's words."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TokenRefused("expired", "the token has expired: sign in again")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenRefused("not_yet_valid", "the token is not valid yet (nbf or iat in the future)")
    if isinstance(exc, jwt.InvalidAudienceError):
        return TokenRefused("audience", f"the token is for another audience; this proxy accepts "
                                        f"{', '.join(accepted)} (server.oidc.audiences)")
    if isinstance(exc, jwt.InvalidIssuerError):
        return TokenRefused("issuer", "the token's issuer is not this proxy's (server.oidc.issuer)")
    if isinstance(exc, jwt.InvalidSignatureError):
        return TokenRefused("signature", "the token's signature does not verify with the issuer's key")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenRefused("claims", f"the token has no {exc.claim!r} claim")
    return TokenRefused("malformed", f"the token is not valid: {type(exc).__name__}")
