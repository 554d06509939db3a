"""A fuzzer of the request head over both paths: Hypothesis writes heads from a grammar of valid
and near-valid HTTP/1.1 (odd methods, targets and versions, duplicate and conflicting framing,
``Connection`` naming framing headers, keys good and bad, control bytes, folded lines, bodies
that hold a request), each followed by an ordinary request on the same connection. Every head
goes over a raw socket to a server with the fast path and to one without it (aiohttp's path).

Both must answer alike (statuses and bodies), their agents must see the same requests, and
each agent must see exactly one well-framed request per client request it answered: its own
framing, the length it says, nothing smuggled. The seed is fixed (``derandomize``) and the
count bounded, so a run is the same every time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httptools
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings as hypothesis_settings, strategies as st

from agentproxy.api import create_app

from .._support import settings_with
from .conftest import ALICE_KEY, API, BOB_KEY, KEYS, FastPathTestServer
from .memory_backend import MemoryBackend
from .raw_agent import OK_BODY, RecordingAgent, Seen

EXAMPLES = 200
"""Heads per run (a bound: each costs two connections and a few milliseconds)."""
READ_GUARD = 10.0
"""Seconds to wait for a server to end a connection (a bound, not a measurement)."""

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
SENTINEL = (f"GET {API}/status HTTP/1.1\r\nHost: proxy.test\r\nX-API-Key: {ALICE_KEY}\r\n"
            "Connection: close\r\n\r\n").encode()
"""The request after each fuzzed one: it shows whether the connection is still in step."""


# --- the grammar -----------------------------------------------------------------------------------
# A request is valid but for at most one flaw (so that most reach the agent, and each flaw is seen
# on its own); a Connection header, which may name any header, can come with any of them.

FLAWS = st.sampled_from([None] * 6 + ["method", "target", "version", "host", "key", "line", "many", "bare-lf",
                                      "framing"])
METHODS = st.sampled_from(["GET", "POST", "POST", "PUT", "PATCH", "DELETE"])
ODD_METHODS = st.sampled_from(["OPTIONS", "TRACE", "get", "G ET", "POST\t", "PROPFIND"])
TARGETS = st.sampled_from([f"{API}/status", f"{API}/message", f"{API}/messages?after=1",
                           f"http://proxy.test{API}/message", f"HTTP://other.test:1{API}/messages?after=1"])
ODD_TARGETS = st.sampled_from([
    f"{API}/", f"{API}/st%61tus", f"{API}/../api/status", f"{API}/status#top", f"{API}/sta tus", f"{API}/\x7f",
    "/sessions/s1/agents/a2/api/status", "/sessions/s1/agents/a1", "/sessions/s1/agents/a%31/api/status",
    "/healthz", "*", "sessions/s1/agents/a1/api/status", f"//{API}/status", "proxy.test:80",
])
ODD_VERSIONS = st.sampled_from(["HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 ", "HTTP/11"])
ODD_HOSTS = st.sampled_from([[], ["host: proxy.test"], ["Host: localhost:1"], ["Host:"], ["Host: a b"],
                             ["Host: proxy.test"] * 2, ["Host: proxy.test", "Host: other.test"]])
KEYS_OF_ALICE = st.sampled_from([f"X-API-Key: {ALICE_KEY}", f"Authorization: Bearer {ALICE_KEY}",
                                 f"x-api-key:{ALICE_KEY} "])
ODD_KEYS = st.sampled_from([[f"X-API-Key: {BOB_KEY}"], ["X-API-Key: wrong"], ["Authorization: Bearer"], [],
                            [f"X-API-Key: {ALICE_KEY}", "X-API-Key: wrong"], ["Authorization: Bearer wrong"]])
CONNECTION_LINES = st.none() | st.sampled_from([
    "Connection: content-length", "Connection: keep-alive, Content-Length", "Connection: Transfer-Encoding",
    "Connection: close", "Connection: keep-alive", "Connection: host", "Connection: x-api-key",
    "Connection: content-type, x-forwarded-for", "Connection: upgrade", "Connection: te, trailer",
])
PLAIN_LINES = st.sampled_from([
    "Keep-Alive: timeout=5", "TE: trailers", "Trailer: X-T", "Proxy-Authorization: Basic eA==",
    "X-Forwarded-For: 192.0.2.1", "X-Forwarded-Host: evil.test", "Content-Type: application/json",
    "User-Agent: fuzz", "Accept: */*", "X-Tab: a\tb", "X-Latin: caf\xe9", "X-Empty:",
])
ODD_LINES = st.sampled_from([
    "Upgrade: websocket", "Expect: 100-continue", "Expect: nothing", "X-Fold: a\r\n folded", "X-Ctl: a\x01b",
    "X-Nul: a\x00b", "X-Del: a\x7fb", " X-Lead: v", "X-Colon : v", "Bad Name: v", ": nameless",
    "X-Long: " + "a" * 9000, "Transfer-Encoding: identity", "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip", "Transfer-Encoding: xchunked", "Content-Length: abc", "Content-Length: -1",
    "Content-Type: text/plain", "User-Agent: another",
])
BODIES = st.sampled_from([b"{}", b'{"content": "hi", "type": "user"}', SMUGGLED, SMUGGLED + b"x" * 20, b""])


def _chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part) + b"0\r\n\r\n"


@st.composite
def framed_bodies(draw: st.DrawFn, odd: bool) -> tuple[list[str], bytes]:
    """The framing lines of a request and the bytes of its body (as many as they announce)."""
    body = draw(BODIES)
    n = len(body)
    if not odd:
        kind = draw(st.sampled_from(["none", "length", "length", "chunked"]))
        if kind == "none":
            return [], b""
        if kind == "length":
            return [f"Content-Length: {n}"], body
        return [draw(st.sampled_from(["Transfer-Encoding: chunked", "transfer-encoding:  Chunked"]))], _chunked(body)
    kind = draw(st.sampled_from(["odd-length", "two-lengths", "both"]))
    if kind == "odd-length":
        return [draw(st.sampled_from([f"Content-Length: +{n}", f"Content-Length: 0{n}", f"Content-Length: {n} ",
                                      f"Content-Length: {n}, {n}", f"Content-Length:{n}", f"Content-Length: {n}.0"]))
                ], body
    if kind == "two-lengths":
        return [f"Content-Length: {n}", draw(st.sampled_from([f"Content-Length: {n}", f"Content-Length: {n + 1}"]))], body
    return [f"Content-Length: {n}", "Transfer-Encoding: chunked"], _chunked(body)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """One request, valid but for at most one flaw, with its body; and the path its agent should see."""
    flaw = draw(FLAWS)
    method = draw(ODD_METHODS if flaw == "method" else METHODS)
    target = draw(ODD_TARGETS if flaw == "target" else TARGETS)
    version = draw(ODD_VERSIONS) if flaw == "version" else "HTTP/1.1"
    framing, body = draw(framed_bodies(flaw == "framing"))
    lines = [*(draw(ODD_HOSTS) if flaw == "host" else ["Host: proxy.test"]),
             *(draw(ODD_KEYS) if flaw == "key" else [draw(KEYS_OF_ALICE)]),
             *draw(st.lists(PLAIN_LINES, max_size=3)), *framing]
    connection = draw(CONNECTION_LINES)
    if connection is not None:
        lines.append(connection)
    if flaw == "line":
        lines.append(draw(ODD_LINES))
    lines = draw(st.permutations(lines))
    if flaw == "many":  # many lines, at some place among the others
        at = draw(st.integers(0, len(lines)))
        lines[at:at] = [f"X-Many-{i}: v" for i in range(draw(st.sampled_from([70, 130])))]
    head = f"{method} {target} {version}\r\n" + "".join(line + "\r\n" for line in lines)
    if flaw == "bare-lf":  # one line (or more) ended by LF alone
        head = head.replace("\r\n", "\n", 1 + draw(st.integers(0, len(lines))))
    return head.encode("latin-1") + b"\r\n" + body, target.partition("/agents/a1/api")[2]


# --- the two servers ---------------------------------------------------------------------------------

@dataclass
class Side:
    """One server (with or without the fast path) and the agent behind it."""

    client: TestClient
    agent: RecordingAgent


@dataclass
class Pair:
    loop: asyncio.AbstractEventLoop
    fast: Side
    full: Side


async def _side(fast: bool) -> Side:
    agent = RecordingAgent()
    url = await agent.start()
    app = create_app(settings_with(), MemoryBackend(upstream=url), KEYS)
    client = TestClient(FastPathTestServer(app, host="127.0.0.1", fast=fast))
    await client.start_server()
    created = await client.post("/sessions/s1/agents", json={"id": "a1"}, headers={"X-API-Key": ALICE_KEY})
    assert created.status == 201
    return Side(client, agent)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    loop = asyncio.new_event_loop()
    try:
        fast = loop.run_until_complete(_side(True))
        full = loop.run_until_complete(_side(False))
        yield Pair(loop, fast, full)
        for side in (fast, full):
            loop.run_until_complete(side.client.close())
            loop.run_until_complete(side.agent.stop())
    finally:
        loop.close()


class _Answers:
    """The answers in a client's bytes, as llhttp frames them."""

    def __init__(self) -> None:
        self.list: list[tuple[int, bytes]] = []
        self._body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self._body = b""

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.list.append((self.parser.get_status_code(), self._body))


def answers(data: bytes) -> list[tuple[int, bytes]]:
    """Status and body of each answer in ``data``; a last entry ``(0, error)`` when llhttp stopped.
    (aiohttp answers a request of another version in that version, which llhttp does not read.)"""
    parsed = _Answers()
    try:
        parsed.parser.feed_data(re.sub(rb"(^|\r\n\r\n|})HTTP/\d\.\d ", rb"\1HTTP/1.1 ", data))
    except httptools.HttpParserError as exc:
        parsed.list.append((0, str(exc).encode()))
    return parsed.list


async def _exchange(side: Side, request: bytes) -> tuple[bytes, list[Seen]]:
    """Everything the server wrote back until it ended the connection, and what its agent saw meanwhile."""
    before = len(side.agent.requests)
    reader, writer = await asyncio.open_connection("127.0.0.1", side.client.port)
    try:
        writer.write(request + SENTINEL)
        data = await asyncio.wait_for(reader.read(-1), READ_GUARD)
    except (TimeoutError, ConnectionError) as exc:
        data = f"<{type(exc).__name__}>".encode()
    finally:
        writer.close()
    return data, side.agent.requests[before:]


def _short(data: bytes) -> str:
    """``data`` for a failure's message (a long head would hide the rest)."""
    return repr(data if len(data) <= 1200 else data[:600] + b"[...]" + data[-600:])


def _well_framed(seen: Seen) -> None:
    """A request as the proxy writes it upstream: its own Host and framing, the length it says."""
    assert seen.target.startswith("/") and seen.target != "/smuggled", seen
    assert seen.header("Host") == ["localhost"], seen
    lengths, codings = seen.header("Content-Length"), seen.header("Transfer-Encoding")
    assert len(lengths) + len(codings) <= 1, seen
    if lengths:
        assert lengths == [str(len(seen.body))], seen
    elif not codings:
        assert seen.body == b"", seen
    assert not seen.header("X-API-Key") and not seen.header("Authorization"), seen


@hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=requests())
def test_both_paths_answer_alike_and_agents_see_one_framed_request_per_answer(pair: Pair, case: tuple[bytes, str]):
    request, path = case
    fast_bytes, fast_seen = pair.loop.run_until_complete(_exchange(pair.fast, request))
    full_bytes, full_seen = pair.loop.run_until_complete(_exchange(pair.full, request))
    shown = f"request {_short(request)}\nfast path: {_short(fast_bytes)}\nfull path: {_short(full_bytes)}"
    assert answers(fast_bytes) == answers(full_bytes), shown
    assert [(s.method, s.target, s.body) for s in fast_seen] == [(s.method, s.target, s.body) for s in full_seen], shown
    for seen in fast_seen + full_seen:
        _well_framed(seen)
        assert seen.target in (path, "/status"), shown  # the fuzzed request's own path, or the sentinel's
    event(f"the agent saw {len(fast_seen)} request(s)")
    event("a body holding a request reached the agent" if any(SMUGGLED in s.body for s in fast_seen) else
          "no body holding a request reached the agent")
    # One request upstream for each answer the agent gave, nothing else.
    assert (len(fast_seen), len(full_seen)) == (fast_bytes.count(OK_BODY), full_bytes.count(OK_BODY)), shown
    assert not pair.fast.agent.errors and not pair.full.agent.errors
