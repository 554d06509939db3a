"""``agentproxy login``: sign in with the server's identity provider from the command line, and
the token the other commands then present.

The server's ``GET /auth/config`` names the provider and the CLI's public client. The login
listens on a loopback port of its own (RFC 8252: the provider redirects the browser there),
sends the browser to the provider with a PKCE challenge, takes the code back, exchanges it, and
keeps the tokens per server in ``$XDG_CONFIG_HOME/agentproxy/tokens.json`` (``~/.config/...``;
``AGENTPROXY_TOKEN_FILE`` elsewhere), a 0600 file. ``agents`` and ``chat`` present the ID
token for that server while it has not expired, when no API key is given.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import webbrowser
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..privatefile import write_private
from ..teams.oidc import SignInRequest
from .errors import EXIT_TIMEOUT, ClientError, ServerError
from .http import ApiClient

TOKEN_FILE_ENV = "AGENTPROXY_TOKEN_FILE"


def token_file() -> Path:
    """Where the tokens are kept."""
    explicit = os.environ.get(TOKEN_FILE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agentproxy" / "tokens.json"


def _read_all() -> dict[str, Any]:
    try:
        data = json.loads(token_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stored_token(server: str, clock: float | None = None) -> str | None:
    """The ID token kept for ``server`` while it is valid for another 10 seconds; else None."""
    entry = _read_all().get(server.rstrip("/"))
    if not isinstance(entry, dict) or not isinstance(entry.get("id_token"), str):
        return None
    expires = entry.get("expires_at")
    now = time.time() if clock is None else clock
    if isinstance(expires, (int, float)) and now + 10 >= expires:
        return None
    return str(entry["id_token"])


def _store(server: str, tokens: dict[str, Any]) -> Path:
    data = _read_all()
    entry = {"id_token": tokens["id_token"], "expires_at": _expiry(str(tokens["id_token"]))}
    data[server.rstrip("/")] = entry
    path = token_file()
    write_private(path, json.dumps(data, indent=2) + "\n")
    return path


def forget(server: str) -> bool:
    """Remove the token kept for ``server``; False when there was none."""
    data = _read_all()
    if data.pop(server.rstrip("/"), None) is None:
        return False
    write_private(token_file(), json.dumps(data, indent=2) + "\n")
    return True


def _expiry(token: str) -> float | None:
    import base64

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        async with session.request(method, url, **kwargs) as answer:
            body = await answer.read()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ClientError(f"cannot reach {url}: {type(exc).__name__}") from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200 or not isinstance(document, dict):
        error = document.get("error") if isinstance(document, dict) else None
        raise ClientError(f"{url} answered {status}{': ' + str(error)[:100] if error else ''}")
    return document


async def login(server: str, *, open_browser: bool = True, timeout: float = 300.0) -> Path:
    """Sign in for ``server``; the file the token was kept in."""
    async with ApiClient(server) as client:
        try:
            config = await client.request("GET", "/auth/config")
        except ServerError as exc:
            if exc.status == 404:
                raise ClientError(f"{server} has no sign-in (its server.oidc.issuer is unset): use an API key") from None
            raise
    attempt = SignInRequest.new()
    answer: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        if not answer.done():
            answer.set_result(dict(request.query))
        return web.Response(text="agentproxy: signed in; you can close this tab.\n")

    app = web.Application()
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        redirect_uri = f"http://127.0.0.1:{port}/callback"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), trust_env=False) as session:
            discovery = await _json(session, "GET", str(config["issuer"]).rstrip("/")
                                    + "/.well-known/openid-configuration")
            url = attempt.url(str(discovery["authorization_endpoint"]), str(config["client_id"]), redirect_uri,
                              tuple(config.get("scopes") or ("openid",)))
            print(f"Sign in at:\n{url}", file=sys.stderr, flush=True)
            if open_browser:
                webbrowser.open(url)
            try:
                query = await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                raise ClientError(f"no sign-in within {timeout:g} s", EXIT_TIMEOUT) from None
            if "error" in query:
                raise ClientError(f"the identity provider refused the sign-in: {query['error'][:64]}")
            if query.get("state") != attempt.state or not query.get("code"):
                raise ClientError("the sign-in's answer is not the one of this login: run agentproxy login again")
            tokens = await _json(session, "POST", str(discovery["token_endpoint"]), data={
                "grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect_uri,
                "client_id": str(config["client_id"]), "code_verifier": attempt.verifier})
    finally:
        await runner.cleanup()
    if not isinstance(tokens.get("id_token"), str):
        raise ClientError("the identity provider gave no ID token")
    return _store(server, tokens)
