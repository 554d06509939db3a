"""A real OpenID provider for the sign-in tests: ``testenv/oidc-provider`` (zitadel/oidc's example
provider with users in groups and key rotation), built into the cache by ``bin/just unit``
(``testenv/build.sh oidc-provider``), started on a free loopback port.

:func:`sign_in` goes through the provider's own login page as a browser would (authorization
request with PKCE, the username/password form, the redirect with the code) and exchanges the
code, so every token a test uses is one the provider issued.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import aiohttp

from agentproxy.agentapi import cache_root

SOURCES = Path(__file__).resolve().parents[1] / "testenv" / "oidc-provider"
CLIENT_ID, CLI_CLIENT_ID, SHORT_CLIENT_ID = "agentproxy", "agentproxy-cli", "agentproxy-short"
SECRET_ENV = "AGENTPROXY_TEST_OIDC_SECRET"

USERS = {
    "alice": ("pw-alice", ["ml"]),
    "bob": ("pw-bob", ["ml"]),
    "carol": ("pw-carol", ["web"]),
    "dave": ("pw-dave", ["platform"]),
}
"""User name to password and groups (the provider's ``groups`` claim)."""


def binary() -> Path:
    """The provider built from this checkout's sources (the cache entry ``testenv/build.sh`` makes)."""
    digest = hashlib.sha256(b"".join((SOURCES / name).read_bytes() for name in ("go.mod", "go.sum", "main.go")))
    path = cache_root() / "bin" / f"oidc-provider-{digest.hexdigest()[:16]}" / "oidc-provider"
    assert path.is_file(), f"{path} is missing: run `testenv/build.sh oidc-provider` (`bin/just unit` does)"
    return path


@dataclass
class Provider:
    """A running provider: its issuer URL and the dashboard client's secret."""

    issuer: str
    secret: str
    process: subprocess.Popen[bytes]

    async def rotate(self, keep: bool = False) -> str:
        """A new signing key (the old one stays published with ``keep``); its key id."""
        async with aiohttp.ClientSession() as session, session.post(
                f"{self.issuer}test/rotate", params={"keep": "1" if keep else "0"}) as answer:
            assert answer.status == 200, await answer.text()
            return str((await answer.json())["kid"])

    async def discovery(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
                f"{self.issuer}.well-known/openid-configuration") as answer:
            return dict(await answer.json())


@contextmanager
def running_provider(tmp_path: Path) -> Iterator[Provider]:
    """Start the provider with :data:`USERS`; stop it (by its pid) afterwards, also when the test fails."""
    users = {f"id-{name}": {"ID": f"id-{name}", "Username": name, "Password": password,
                            "Email": f"{name}@example.com", "EmailVerified": True, "Groups": groups}
             for name, (password, groups) in USERS.items()}
    users_file = tmp_path / "oidc-users.json"
    users_file.write_text(json.dumps(users))
    secret = secrets.token_urlsafe(24)
    log = open(tmp_path / "oidc-provider.log", "wb")
    process = subprocess.Popen([str(binary()), "-users", str(users_file), "-short-lifetime", "3s"],
                               stdout=subprocess.PIPE, stderr=log, env={**os.environ, "OIDC_CLIENT_SECRET": secret})
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # "issuer URL" once it listens (or EOF when it failed)
        assert line.startswith("issuer "), f"the provider did not start: {(tmp_path / 'oidc-provider.log').read_text()}"
        yield Provider(line.split()[1], secret, process)
    finally:
        process.kill()
        process.wait(timeout=30)
        log.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def follow_login(session: aiohttp.ClientSession, url: str, username: str, password: str,
                       stop_at: str) -> str:
    """Follow redirects from ``url`` through the provider's login form (filled with the user's
    name and password) until a redirect to a URL starting with ``stop_at``; that URL."""
    for _ in range(12):
        if url.startswith(stop_at):
            return url
        async with session.get(url, allow_redirects=False) as answer:
            body = await answer.text()
            if answer.status in (301, 302, 303, 307):
                url = urljoin(url, answer.headers["Location"])
                continue
            assert answer.status == 200, f"{url}: {answer.status} {body[:300]}"
        # The login page: its form posts the auth request's id with the user's name and password.
        request_id = parse_qs(urlparse(url).query)["authRequestID"][0]
        async with session.post(urljoin(url, "/login/username"), allow_redirects=False,
                                data={"id": request_id, "username": username, "password": password}) as answer:
            assert answer.status in (302, 303), f"login refused: {answer.status} {(await answer.text())[:300]}"
            url = urljoin(url, answer.headers["Location"])
    raise AssertionError(f"no redirect to {stop_at} after the login")


async def sign_in(provider: Provider, username: str, client_id: str = CLI_CLIENT_ID,
                  redirect_uri: str = "http://127.0.0.1:1/callback") -> dict[str, Any]:
    """The tokens (``id_token``, ``access_token``, ...) the provider issues to ``client_id`` for
    ``username`` after the authorization code flow with PKCE (a public client)."""
    discovery = await provider.discovery()
    verifier = secrets.token_urlsafe(32)
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": "openid profile email", "state": state, "nonce": nonce,
              "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        start = str(aiohttp.client.URL(discovery["authorization_endpoint"]).with_query(params))
        back = await follow_login(session, start, username, USERS[username][0], redirect_uri)
        query = parse_qs(urlparse(back).query)
        assert query["state"] == [state]
        async with session.post(discovery["token_endpoint"], data={
                "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect_uri,
                "client_id": client_id, "code_verifier": verifier}) as answer:
            assert answer.status == 200, await answer.text()
            return dict(await answer.json())


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unchecked (to read what the provider put in)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def wait_until_past(moment: float) -> None:
    """Return once the clock is past ``moment`` (a token's expiry): a condition, not a fixed sleep."""
    while time.time() <= moment:
        time.sleep(min(0.5, max(0.05, moment - time.time())))
