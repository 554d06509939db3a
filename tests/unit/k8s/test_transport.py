"""The k8s client's transport (:mod:`agentproxy.backends.k8s.transport`): its calls and watches
over aiohttp. A real aiohttp server on 127.0.0.1 answers as the API server answers a call or a
watch (chunked lines, each an event, written as they happen); kr8s's credentials are stood in for
by an object of their shape, except in the last test, which makes TLS with a client certificate
from a kubeconfig as kr8s loads it (the e2e suite's calls all go the same way, to the test cluster)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from agentproxy.backends.base import Conflict, Forbidden, Unavailable
from agentproxy.backends.k8s.client import Client, Gone, NamespaceMissing
from agentproxy.backends.k8s.credentials import TokenFile
from agentproxy.backends.k8s.health import ApiHealth
from agentproxy.backends.k8s.transport import environment_proxy

PATH = "/api/v1/namespaces/agents/pods"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth(server: str, token: str | None = None) -> SimpleNamespace:
    async def ssl_context() -> bool:
        return True  # nothing of its own to verify with (a plain-HTTP server here)
    return SimpleNamespace(server=server, token=token, tls_server_name=None, proxy=None, ssl_context=ssl_context)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", PATH, handler)
        runner = web.AppRunner(app, shutdown_timeout=1.0)  # a handler that is still writing is cut off
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _watch(client: Client, read_timeout: float = 5.0, path: str = PATH) -> list[Any]:
    async with client.stream(path, {"watch": "1", "labelSelector": "a=b,c"}, read_timeout) as lines:
        return [json.loads(line) async for line in lines if line.strip()]


async def test_events_split_anywhere_and_larger_than_the_readers_buffer_arrive_whole(serve):
    big = {"type": "MODIFIED", "object": {"metadata": {"name": "big"}, "data": {"k": "x" * 300_000}}}
    small = [{"type": "ADDED", "object": {"metadata": {"name": f"o{i}"}}} for i in range(3)]
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.update(query=dict(request.query), headers=dict(request.headers))
        response = web.StreamResponse()
        await response.prepare(request)
        wire = b"".join(json.dumps(e).encode() + b"\n" for e in [small[0], big, small[1]])
        wire += json.dumps(small[2]).encode()  # the last without its newline
        for at in range(0, len(wire), 7777):  # cut anywhere, mid-line included
            await response.write(wire[at:at + 7777])
            await asyncio.sleep(0)
        return response

    url = await serve(handler)
    health = ApiHealth(unready_after=30.0)
    client = Client(SimpleNamespace(auth=_auth(url, token="kr8s-token")), health=health,  # type: ignore[arg-type]
                    headers={"Impersonate-User": "system:serviceaccount:agents:agentproxy"})
    try:
        assert await _watch(client) == [small[0], big, small[1], small[2]]
    finally:
        await client.close()
    assert seen["query"] == {"watch": "1", "labelSelector": "a=b,c"}
    assert seen["headers"]["Authorization"] == "Bearer kr8s-token"
    assert seen["headers"]["Impersonate-User"] == "system:serviceaccount:agents:agentproxy"
    assert client.calls == 1 and health.answering()


async def test_a_token_file_wins_over_the_token_kr8s_loaded(serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("rotated")
    headers: dict[str, str] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        headers.update(request.headers)
        return web.Response(text="")

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url, token="stale")), token=TokenFile(token))  # type: ignore[arg-type]
    try:
        assert await _watch(client) == []
    finally:
        await client.close()
    assert headers["Authorization"] == "Bearer rotated"


async def test_a_silent_watch_ends_quietly_and_the_next_one_connects_again(serve):
    watches = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal watches
        watches += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type": "ADDED", "object": {}}\n')
        await asyncio.sleep(30)  # then nothing (as a watch of Events gets no bookmarks)
        return response

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url)))  # type: ignore[arg-type]
    try:
        assert await _watch(client, read_timeout=0.3) == [{"type": "ADDED", "object": {}}]
        assert await _watch(client, read_timeout=0.3) == [{"type": "ADDED", "object": {}}]
    finally:
        await client.close()
    assert watches == 2


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (410, {"kind": "Status", "code": 410, "message": "too old resource version: 5 (9)"}, Gone, "too old"),
    (403, {"kind": "Status", "code": 403, "reason": "Forbidden",
           "message": 'pods is forbidden: User "x" cannot watch resource "pods"'}, Forbidden, "cannot watch"),
])
async def test_an_error_answer_is_the_servers_own_message(serve, status, body, error, text):
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url)))  # type: ignore[arg-type]
    try:
        with pytest.raises(error, match=text):
            await _watch(client)
    finally:
        await client.close()


async def test_a_server_that_cannot_be_reached_is_unavailable(unused_tcp_port):
    client = Client(SimpleNamespace(auth=_auth(f"http://127.0.0.1:{unused_tcp_port}")))  # type: ignore[arg-type]
    try:
        with pytest.raises(Unavailable, match="cannot be reached"):
            await _watch(client)
    finally:
        await client.close()


async def test_a_kubeconfig_with_a_client_certificate_is_used_as_kr8s_uses_it(tmp_path):
    """The credentials kr8s loads from a kubeconfig (the cluster's CA, a client certificate)
    make the TLS connection of watches and calls: the server requires the certificate and reads its name."""
    import kr8s.asyncio

    from benchmarks.transport import PATH as WATCHED, start_api_server
    from testenv.apiclient import client_kubeconfig
    from testenv.pki import write_pki

    pki = tmp_path / "pki"
    write_pki(pki, {"watcher": "agentproxy:watchers"})
    peers: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peercert") if request.transport else None)
        return web.Response(text='{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n')

    runner = await start_api_server(pki, handler)  # the client certificate required
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(client_kubeconfig(f"https://127.0.0.1:{port}", pki, "watcher"))
    client = Client(await kr8s.asyncio.api(kubeconfig=str(kubeconfig)))
    try:
        assert await _watch(client, path=WATCHED) == [{"type": "ADDED", "object": {"metadata": {"name": "a"}}}]
        assert (await client.request("GET", "/version"))["gitVersion"] == "v1.35.0"  # a call, the same way
    finally:
        await client.close()
        await runner.cleanup()
    [peer] = peers
    subject = dict(field for rdn in peer["subject"] for field in rdn)
    assert subject["commonName"] == "watcher"


# --- calls -------------------------------------------------------------------------------------

async def test_a_call_sends_its_method_params_body_and_content_type_and_returns_the_json(serve):
    seen: list[tuple[str, dict[str, str], str, str, bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, dict(request.query), request.headers["Content-Type"],
                     request.headers.get("Authorization", ""), await request.read()))
        return web.json_response({"kind": "ConfigMap", "metadata": {"resourceVersion": "7"}})

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url, token="t0k")))  # type: ignore[arg-type]
    body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}
    try:
        stored = await client.request("PATCH", PATH, body=body, params={"fieldManager": "agentproxy", "force": "true"},
                                      content_type="application/apply-patch+yaml")
    finally:
        await client.close()
    assert stored == {"kind": "ConfigMap", "metadata": {"resourceVersion": "7"}}
    [(method, query, content_type, authorization, sent)] = seen
    assert (method, query, content_type) == ("PATCH", {"fieldManager": "agentproxy", "force": "true"},
                                            "application/apply-patch+yaml")
    assert authorization == "Bearer t0k" and json.loads(sent) == body and client.calls == 1


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (409, {"kind": "Status", "code": 409, "reason": "AlreadyExists",
           "message": 'configmaps "agent-a1-config" already exists'}, Conflict, "already exists"),
    (403, {"kind": "Status", "code": 403, "reason": "Forbidden",
           "message": 'configmaps is forbidden: User "x" cannot create resource "configmaps"'}, Forbidden,
     "may not create configmaps"),
    (404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": 'namespaces "gone" not found',
           "details": {"name": "gone", "kind": "namespaces"}}, NamespaceMissing, "'gone' does not exist"),
    (502, "<html>bad gateway</html>", Unavailable, "answered 502 to create configmaps: <html>bad gateway"),
])
async def test_an_error_answer_to_a_call_is_the_servers_own_message(serve, status, body, error, text):
    async def handler(request: web.Request) -> web.StreamResponse:
        if isinstance(body, str):
            return web.Response(text=body, status=status)
        return web.json_response(body, status=status)

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url)))  # type: ignore[arg-type]
    try:
        with pytest.raises(error, match=text):
            await client.request("POST", PATH, body={}, verb="create", resource="configmaps")
    finally:
        await client.close()


async def test_a_401_is_repeated_once_with_the_token_read_again(serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("old")
    sent: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sent.append(request.headers["Authorization"])
        if request.headers["Authorization"] != "Bearer new":
            token.write_text("new")  # rotated meanwhile, as the kubelet rotates a ServiceAccount's token
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        return web.json_response({"items": []})

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url)), token=TokenFile(token))  # type: ignore[arg-type]
    try:
        assert await client.request("GET", PATH) == {"items": []}
        assert sent == ["Bearer old", "Bearer new"] and client.calls == 2
    finally:
        await client.close()


async def test_a_401_without_a_new_token_is_the_answer(serve):
    sent: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sent.append(request.headers.get("Authorization", ""))
        return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url, token="expired")))  # type: ignore[arg-type]
    try:
        with pytest.raises(Forbidden, match="rejected the proxy's credentials: Unauthorized"):
            await client.request("GET", PATH)
    finally:
        await client.close()
    assert sent == ["Bearer expired"]


async def test_a_call_the_server_does_not_answer_in_time_is_unavailable_and_told_to_health(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.json_response({})

    url = await serve(handler)
    health = ApiHealth(unready_after=30.0)
    client = Client(SimpleNamespace(auth=_auth(url)), request_timeout=0.3, health=health)  # type: ignore[arg-type]
    try:
        with pytest.raises(Unavailable, match="did not answer get configmaps within 0.3 s"):
            await client.request("GET", PATH, verb="get", resource="configmaps")
    finally:
        await client.close()
    assert health.last_error is not None and "did not answer" in health.last_error


async def test_a_call_to_a_server_that_cannot_be_reached_is_unavailable(unused_tcp_port):
    client = Client(SimpleNamespace(auth=_auth(f"http://127.0.0.1:{unused_tcp_port}")))  # type: ignore[arg-type]
    try:
        with pytest.raises(Unavailable, match="cannot be reached"):
            await client.request("GET", PATH)
    finally:
        await client.close()


async def test_logs_are_read_as_text(serve):
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.query == {"tailLines": "2"}
        return web.Response(text="line 1\nline 2\n")

    url = await serve(handler)
    client = Client(SimpleNamespace(auth=_auth(url)))  # type: ignore[arg-type]
    try:
        assert await client.text(PATH, params={"tailLines": "2"}) == "line 1\nline 2\n"
    finally:
        await client.close()


# --- what of the environment is used -----------------------------------------------------------

def test_the_proxy_is_the_environments_for_the_servers_scheme_unless_no_proxy_covers_it(monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://10.0.0.1:6443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert environment_proxy("https://10.0.0.1:6443") == "http://proxy.example:3128"
    assert environment_proxy("http://10.0.0.1:8080") is None  # no HTTP_PROXY, no ALL_PROXY
    monkeypatch.setenv("ALL_PROXY", "http://all.example:3128")
    assert environment_proxy("http://10.0.0.1:8080") == "http://all.example:3128"
    monkeypatch.setenv("NO_PROXY", "10.0.0.1,.cluster.local")
    assert environment_proxy("https://10.0.0.1:6443") is None
    assert environment_proxy("https://api.cluster.local") is None
    assert environment_proxy("https://10.0.0.2:6443") == "http://proxy.example:3128"


async def test_a_netrc_password_is_not_sent(serve, tmp_path, monkeypatch):
    """aiohttp's ``trust_env`` would add a ``~/.netrc`` password to every call, and refuse one
    that carries a bearer token already; httpx, which kr8s uses, sends none."""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    sent: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sent.append(request.headers.get("Authorization"))
        return web.json_response({})

    url = await serve(handler)
    for token in (None, "t0k"):
        client = Client(SimpleNamespace(auth=_auth(url, token=token)))  # type: ignore[arg-type]
        try:
            assert await client.request("GET", PATH) == {}
        finally:
            await client.close()
    assert sent == [None, "Bearer t0k"]
