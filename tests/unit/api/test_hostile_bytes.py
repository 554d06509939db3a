"""Bytes that are not text where text is expected: keys, ids, query parameters and body fields.

Each gets a 4xx JSON error naming the field and the rule, never a 500 or a traceback in the log
(which a client without any key could otherwise fill), on both the fast path and aiohttp's path
(raw sockets, to send every byte as is)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app, hash_key
from agentproxy.api.logfilter import quiet_malformed_requests
from agentproxy.settings import Settings

from .memory_backend import MemoryBackend
from .raw_client import Raw
from .support import ALICE_KEY, API, KEYS, FastPathTestServer

UNICODE_KEY = "clé-ünïcode-0123"
"""A valid key that is UTF-8 text beyond ASCII."""


@pytest.fixture(params=["fast-path", "aiohttp"])
async def keyed_api(request: pytest.FixtureRequest, settings: Settings,
                    backend: MemoryBackend) -> AsyncIterator[TestClient]:
    """The API with keys, on the fast path (as ``serve`` runs it) or on aiohttp's server alone,
    with agent a1 of alice in session s1."""
    keys = [*KEYS, {"name": "carol", "sha256": hash_key(UNICODE_KEY)}]
    quiet_malformed_requests()  # as `agentproxy serve` does
    app = create_app(settings, backend, keys)
    server = FastPathTestServer(app, host="127.0.0.1") if request.param == "fast-path" \
        else TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    try:
        created = await client.post("/sessions/s1/agents", json={"id": "a1"}, headers={"X-API-Key": ALICE_KEY})
        assert created.status == 201
        yield client
    finally:
        await client.close()


async def exchange(api: TestClient, request: bytes) -> tuple[int, dict[str, str], bytes]:
    raw = await Raw.open(api.port)
    try:
        raw.send(request)
        return await raw.answer()
    finally:
        await raw.close()


def head(target: bytes, *lines: bytes) -> bytes:
    return b"\r\n".join([b"GET " + target + b" HTTP/1.1", b"Host: proxy.test", *lines]) + b"\r\n\r\n"


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]


@pytest.mark.parametrize("header, field", [
    (b"X-API-Key: \xff\xfe\x80", "X-API-Key"),
    (b"Authorization: Bearer \xff\xfe\x80", "Authorization"),
    (b"Authorization: Bearer caf\xe9", "Authorization"),  # Latin-1, not UTF-8
    (b"X-API-Key: " + ALICE_KEY.encode()[:-1] + b"\xc3", "X-API-Key"),  # a cut UTF-8 sequence
], ids=["x-api-key", "bearer", "latin-1", "cut"])
@pytest.mark.parametrize("target", [f"{API}/status".encode(), b"/sessions/s1/agents", b"/agents"],
                         ids=["proxied", "session-list", "list"])
async def test_a_key_that_is_not_utf8_is_a_401_naming_the_header(keyed_api, caplog, header, field, target):
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(keyed_api, head(target, header))
    assert status == 401, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error == {"code": "unauthorized", "message": f"{field}: the API key must be UTF-8 text", "field": field}
    assert headers["www-authenticate"] == 'Bearer realm="agentproxy"'
    no_traceback(caplog)


async def test_a_key_that_is_utf8_beyond_ascii_is_a_key(keyed_api, caplog):
    caplog.set_level(logging.DEBUG)
    key = UNICODE_KEY.encode()
    for header in (b"X-API-Key: " + key, b"Authorization: Bearer " + key):
        status, _, body = await exchange(keyed_api, head(b"/agents", header))
        assert status == 200 and json.loads(body)["agents"] == []  # carol's own, none
        status, _, body = await exchange(keyed_api, head(f"{API}/status".encode(), header))
        assert status == 404  # alice's agent, which carol does not see
    no_traceback(caplog)


async def test_a_key_of_latin1_bytes_is_not_taken_for_its_utf8_twin(keyed_api):
    # The fast path reads header bytes as Latin-1: the byte 0xe9 must not become the text "é".
    twin = UNICODE_KEY.encode("utf-8").decode("utf-8").encode("latin-1")
    status, _, _ = await exchange(keyed_api, head(b"/agents", b"X-API-Key: " + twin))
    assert status == 401


@pytest.mark.parametrize("target, field", [
    (b"/sessions/%ff/agents", "session"),
    (b"/sessions/s%00/agents", "session"),
    (b"/sessions/s1/agents/%ed%a0%80", "agent"),
    (b"/sessions/\xff/agents", "head"),  # refused by the HTTP parser itself
    (b"/agents?session=%ff%fe", "session"),
    (b"/agents?status=%ed%a0%80", "status"),
    (b"/agents?status=\xff", "head"),
    (b"/sessions/s1/agents/a1/logs?tail=%ff", "tail"),
    (b"/sessions/s1/agents/a1/logs?format=%00", "format"),
    (b"/agents?status=ready&session=s%ff%fe", "session"),
], ids=["session-ff", "session-nul", "agent-surrogate", "session-raw-ff", "query-session", "query-status",
        "query-status-raw", "tail", "format", "second-parameter"])
async def test_ids_and_query_parameters_that_are_not_text_are_4xx(keyed_api, caplog, target, field):
    caplog.set_level(logging.DEBUG)
    status, _, body = await exchange(keyed_api, head(target, b"X-API-Key: " + ALICE_KEY.encode()))
    assert 400 <= status < 500, body
    if field == "head":
        assert status == 400
    elif field is not None:
        assert json.loads(body)["error"]["field"] == field
    no_traceback(caplog)
