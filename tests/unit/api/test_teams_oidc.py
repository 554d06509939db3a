"""Sign-in with OpenID Connect against a real provider (``tests/oidc_provider.py``) on loopback:
bearer ID and access tokens for the API, the dashboard's code flow with PKCE and its session
cookie, and every way a token is refused (expired, another audience, another issuer, a bad
signature, a rotated-out key, none at all): 401 with a JSON body naming the reason."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa

from agentproxy.api import create_app
from agentproxy.settings import Settings
from tests.oidc_provider import (
    CLI_CLIENT_ID,
    CLIENT_ID,
    SECRET_ENV,
    SHORT_CLIENT_ID,
    USERS,
    Provider,
    claims_of,
    follow_login,
    running_provider,
    sign_in,
    wait_until_past,
)

from .._support import settings_with
from .support import FastPathTestServer, error_of


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running_provider(tmp_path_factory.mktemp("oidc")) as running:
        yield running


def oidc_settings(provider: Provider, *more: str, audiences: str = f"{CLIENT_ID},{CLI_CLIENT_ID},{SHORT_CLIENT_ID}",
                  issuer: str | None = None) -> Settings:
    return settings_with(f"server.oidc.issuer={issuer or provider.issuer}", f"server.oidc.client_id={CLIENT_ID}",
                         f"server.oidc.cli_client_id={CLI_CLIENT_ID}", f"server.oidc.audiences={audiences}",
                         f"server.oidc.client_secret_env={SECRET_ENV}", "server.oidc.jwks_min_refresh=0",
                         "server.oidc.leeway=0", "teams.admin_group=platform", *more)


@pytest.fixture
def settings(provider: Provider, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(SECRET_ENV, provider.secret)
    return oidc_settings(provider, f"teams.audit_log={tmp_path / 'audit.log'}")


@pytest.fixture
async def serve(backend: Any) -> AsyncIterator[Any]:
    clients: list[TestClient] = []

    async def make(settings: Settings, fast: bool = True) -> TestClient:
        client = TestClient(FastPathTestServer(create_app(settings, backend), host="127.0.0.1", fast=fast))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def proxy(serve: Any, settings: Settings) -> TestClient:
    return await serve(settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(response: aiohttp.ClientResponse, code: str) -> str:
    error = await error_of(response, 401)
    assert error["code"] == code, error
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return str(error["message"])


async def test_an_id_token_and_an_access_token_of_the_provider_name_the_user_and_groups(provider, proxy):
    tokens = await sign_in(provider, "alice")
    assert claims_of(tokens["id_token"])["groups"] == ["ml"]
    for token in (tokens["id_token"], tokens["access_token"]):
        me = await (await proxy.get("/auth/me", headers=bearer(token))).json()
        assert me == {"user": "alice", "groups": ["ml"], "admin": False, "via": "oidc"}
    created = await proxy.post("/sessions/s1/agents", json={"id": "a1", "share": "ml"},
                               headers=bearer(tokens["id_token"]))
    assert created.status == 201, await created.text()
    assert (await created.json())["owner"] == "alice"
    # bob is in ml by the provider's groups claim: he sees and reaches alice's shared agent, on
    # aiohttp's path and (his token once checked) on the fast path.
    bob = (await sign_in(provider, "bob"))["id_token"]
    for _ in range(2):
        assert (await proxy.get("/sessions/s1/agents/a1/api/status", headers=bearer(bob))).status == 200
    carol = (await sign_in(provider, "carol"))["id_token"]
    await error_of(await proxy.get("/sessions/s1/agents/a1/api/status", headers=bearer(carol)), 404)
    # dave's groups claim makes him an admin (teams.admin_group).
    dave = await (await proxy.get("/auth/me", headers=bearer((await sign_in(provider, "dave"))["id_token"]))).json()
    assert dave["admin"] is True


async def test_no_token_on_a_protected_route_is_401_with_a_json_body(proxy):
    for path in ("/agents", "/auth/me", "/sessions/s1/agents/a1/api/status"):
        error = await error_of(await proxy.get(path), 401)
        assert "sign in" in error["message"]
    error = await error_of(await proxy.get("/agents", headers=bearer("not-a-key")), 401)
    assert "neither" in error["message"]


async def test_an_expired_token_is_401_token_expired(provider, proxy):
    token = (await sign_in(provider, "alice", client_id=SHORT_CLIENT_ID))["id_token"]
    assert (await proxy.get("/agents", headers=bearer(token))).status == 200
    wait_until_past(claims_of(token)["exp"] + 1)
    message = await refused(await proxy.get("/agents", headers=bearer(token)), "token_expired")
    assert "expired" in message
    # Nor does the fast path, which had it remembered, let it through.
    await refused(await proxy.get("/sessions/s1/agents/a1/api/status", headers=bearer(token)), "token_expired")


async def test_a_token_for_another_audience_is_401_naming_the_accepted_ones(provider, serve):
    proxy = await serve(oidc_settings(provider, audiences=CLIENT_ID))
    token = (await sign_in(provider, "alice"))["id_token"]
    assert claims_of(token)["aud"] == [CLI_CLIENT_ID] or claims_of(token)["aud"] == CLI_CLIENT_ID
    message = await refused(await proxy.get("/agents", headers=bearer(token)), "token_audience")
    assert CLIENT_ID in message and "server.oidc.audiences" in message


async def test_a_token_of_another_issuer_is_401_token_issuer(provider, proxy, tmp_path):
    with running_provider(tmp_path) as other:
        token = (await sign_in(other, "alice"))["id_token"]
    message = await refused(await proxy.get("/agents", headers=bearer(token)), "token_issuer")
    assert provider.issuer in message


def _forged(token: str, **changes: Any) -> str:
    """The token with its claims changed and the provider's signature kept."""
    header, payload, signature = token.split(".")
    claims = {**claims_of(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


async def test_a_bad_signature_or_a_key_the_provider_does_not_publish_is_401(provider, proxy):
    token = (await sign_in(provider, "carol"))["id_token"]
    await refused(await proxy.get("/agents", headers=bearer(_forged(token, groups=["platform"]))), "token_signature")
    # Signed by a key of the forger's own, once under the provider's key id and once under another.
    claims = claims_of(token)
    own = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(token)["kid"]
    same_kid = jwt.encode(claims, own, algorithm="RS256", headers={"kid": kid})
    await refused(await proxy.get("/agents", headers=bearer(same_kid)), "token_signature")
    other_kid = jwt.encode(claims, own, algorithm="RS256", headers={"kid": "forged-key"})
    message = await refused(await proxy.get("/agents", headers=bearer(other_kid)), "token_unknown_key")
    assert "does not publish" in message
    # A shared-secret algorithm is never accepted, whatever the secret.
    hmac = jwt.encode(claims, "secret-of-some-client-0123456789abcdef", algorithm="HS256", headers={"kid": kid})
    await refused(await proxy.get("/agents", headers=bearer(hmac)), "token_signature")
    # The genuine token still works.
    assert (await proxy.get("/agents", headers=bearer(token))).status == 200


async def test_a_rotated_key_is_found_without_a_restart_and_a_dropped_one_refused(provider, proxy):
    before = (await sign_in(provider, "alice"))["id_token"]
    assert (await proxy.get("/agents", headers=bearer(before))).status == 200
    await provider.rotate(keep=True)  # the new key signs; the old one is still published
    after = (await sign_in(provider, "alice"))["id_token"]
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    for token in (after, before):
        assert (await proxy.get("/agents", headers=bearer(token))).status == 200
    await provider.rotate(keep=False)  # only the newest key is published now
    newest = (await sign_in(provider, "alice"))["id_token"]
    assert (await proxy.get("/agents", headers=bearer(newest))).status == 200
    for token in (before, after):
        await refused(await proxy.get("/agents", headers=bearer(token)), "token_unknown_key")


async def test_the_dashboard_signs_in_with_the_code_flow_and_a_csrf_safe_session_cookie(provider, proxy, settings,
                                                                                        caplog):
    caplog.set_level(logging.DEBUG)
    base = str(proxy.make_url(""))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{base}/auth/login?next=/ui/", allow_redirects=False) as answer:
            assert answer.status == 302
            to_provider = answer.headers["Location"]
            signin_cookie = answer.headers["Set-Cookie"]
        assert to_provider.startswith(provider.issuer) and "code_challenge_method=S256" in to_provider
        assert "HttpOnly" in signin_cookie and "SameSite=Lax" in signin_cookie
        back = await follow_login(browser, to_provider, "alice", USERS["alice"][0], f"{base}/auth/callback")
        async with browser.get(back, allow_redirects=False) as answer:
            assert answer.status == 302, await answer.text()
            assert answer.headers["Location"] == "/ui/"
            session_cookie = [c for c in answer.headers.getall("Set-Cookie") if c.startswith("agentproxy_session=")][0]
        assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
        assert "Secure" not in session_cookie  # plain HTTP on loopback; over TLS it is Secure
        me = await (await browser.get(f"{base}/auth/me")).json()
        assert me["user"] == "alice" and me["via"] == "oidc"
        # A change needs the header a page of another site cannot send without a preflight.
        async with browser.post(f"{base}/sessions/s2/agents", json={"id": "d1"}) as answer:
            assert answer.status == 403 and (await answer.json())["error"]["field"] == "X-Requested-With"
        async with browser.post(f"{base}/sessions/s2/agents", json={"id": "d1"},
                                headers={"X-Requested-With": "agentproxy"}) as answer:
            assert answer.status == 201 and (await answer.json())["owner"] == "alice"
        # The callback cannot be replayed: the sign-in cookie is gone.
        async with browser.get(back, allow_redirects=False) as answer:
            assert answer.status == 400 and (await answer.json())["error"]["code"] == "signin_expired"
        async with browser.post(f"{base}/auth/logout") as answer:
            assert answer.status == 200
        async with browser.get(f"{base}/auth/me") as answer:
            assert answer.status == 401
    audit = [json.loads(line) for line in open(settings.teams.audit_log)]
    signed = [r for r in audit if r["action"] == "sign_in"]
    assert signed and signed[0]["user"] == "alice" and signed[0]["result"] == "ok"
    # The client's secret is in none of it.
    assert provider.secret not in caplog.text
    assert provider.secret not in open(settings.teams.audit_log).read()


async def test_a_callback_with_another_state_or_an_error_of_the_provider_is_refused_clearly(proxy):
    error = await error_of(await proxy.get("/auth/callback?code=x&state=y"), 400)
    assert error["code"] == "signin_expired"
    error = await error_of(await proxy.get("/auth/callback?error=access_denied&error_description=no"), 401)
    assert "access_denied" in error["message"]


async def test_the_cli_reads_what_it_needs_from_auth_config_and_nothing_secret(provider, proxy):
    config = await (await proxy.get("/auth/config")).json()
    assert config == {"issuer": provider.issuer, "client_id": CLI_CLIENT_ID, "scopes": ["openid", "profile", "email"]}
    assert provider.secret not in json.dumps(config)


async def _cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "agentproxy", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_agentproxy_login_signs_in_through_a_loopback_redirect_and_agents_use_the_token(provider, proxy,
                                                                                             tmp_path):
    server = str(proxy.make_url("")).rstrip("/")
    tokens = tmp_path / "config" / "tokens.json"
    env = {**os.environ, "AGENTPROXY_TOKEN_FILE": str(tokens)}
    env.pop("AGENTPROXY_API_KEY", None)
    login = await _cli("login", "--no-browser", "--server", server, "--timeout", "120", env=env)
    try:
        assert login.stderr is not None
        assert (await asyncio.wait_for(login.stderr.readline(), 60)).decode().startswith("Sign in at:")
        url = (await asyncio.wait_for(login.stderr.readline(), 60)).decode().strip()
        # The person's part: the provider's login page, as a browser would go through it.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            redirect_uri = parse_qs(urlparse(url).query)["redirect_uri"][0]
            assert redirect_uri.startswith("http://127.0.0.1:")
            back = await follow_login(browser, url, "bob", USERS["bob"][0], redirect_uri)
            async with browser.get(back) as answer:
                assert answer.status == 200 and "signed in" in await answer.text()
        _, err = await asyncio.wait_for(login.communicate(), 60)
        assert login.returncode == 0, err.decode()
    finally:
        if login.returncode is None:
            login.kill()
            await login.wait()
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600 and stat.S_IMODE(tokens.parent.stat().st_mode) == 0o700
    ls = await _cli("agents", "ls", "-o", "json", "--server", server, env=env)
    out, err = await asyncio.wait_for(ls.communicate(), 120)
    assert ls.returncode == 0, err.decode()
    created = await _cli("agents", "create", "s7", "--server", server, "-o", "json", env=env)
    out, err = await asyncio.wait_for(created.communicate(), 120)
    assert created.returncode == 0, err.decode()
    assert json.loads(out)["owner"] == "bob"
    logout = await _cli("logout", "--server", server, env=env)
    await asyncio.wait_for(logout.communicate(), 60)
    ls = await _cli("agents", "ls", "--server", server, env=env)
    _, err = await asyncio.wait_for(ls.communicate(), 120)
    assert ls.returncode != 0 and "sign in" in err.decode()


async def test_tokens_on_raw_sockets_on_both_paths(provider, proxy):
    """A token is checked on aiohttp's path first; once checked, the fast path relays its
    requests itself; a forged or expired one is never relayed, whichever path reads it."""
    from .raw_client import Raw, added, counts, get

    alice = (await sign_in(provider, "alice"))["id_token"]
    assert (await proxy.post("/sessions/s1/agents", json={"id": "r1"}, headers=bearer(alice))).status == 201
    path = "/sessions/s1/agents/r1/api/status"
    forged = _forged(alice, preferred_username="dave", groups=["platform"])
    fresh = (await sign_in(provider, "alice"))["id_token"]  # not yet checked by the proxy
    before = counts(proxy)
    raw = await Raw.open(proxy.port)
    try:
        raw.send(get(path, f"Authorization: Bearer {forged}"))
        status, _, body = await raw.answer()
        assert status == 401 and json.loads(body)["error"]["code"] == "token_signature"
    finally:
        await raw.close()
    assert added(proxy, before)[0] == 0
    for expect_relayed in (0, 1):  # handed to aiohttp, which checks and remembers it; then relayed
        raw = await Raw.open(proxy.port)
        try:
            raw.send(get(path, f"Authorization: Bearer {fresh}"))
            assert (await raw.answer())[0] == 200
        finally:
            await raw.close()
        assert added(proxy, before)[0] == expect_relayed


def test_the_openapi_document_has_the_signin_routes_when_oidc_is_on(settings: Settings) -> None:
    from agentproxy.api.openapi import openapi_document
    from agentproxy.teams.signin import openapi_paths

    from .support import documented_operations, served_operations
    assert served_operations(settings) == documented_operations(openapi_document(extra_paths=openapi_paths()))
    assert {path for path, _ in served_operations(settings)} >= {"/auth/login", "/auth/me"}
