"""Which request heads the fast path may relay, and what it reads of them (pure, no sockets)."""

from __future__ import annotations

import pytest

from agentproxy.api.request_head import MAX_BODY, Relayable, RequestHead, head_end, relayable

PATH = "/sessions/s1/agents/a1/api/status"


def read(*lines: str) -> RequestHead | None:
    return RequestHead.read(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_a_plain_request_yields_what_the_relay_needs():
    head = read(f"POST {PATH}?x=1 HTTP/1.1", "Host: proxy.test", "Content-Length: 12",
                "Authorization: Bearer k1", "X-API-Key: k2", "Authorization: Bearer ignored")
    assert head is not None and head.method == "POST" and head.url == f"{PATH}?x=1".encode()
    assert relayable(head) == Relayable("s1", "a1", 12, True, "proxy.test", "Bearer k1", "k2")
    bare = read(f"GET {PATH} HTTP/1.1", "Host: h")
    assert bare is not None and relayable(bare) == Relayable("s1", "a1", 0, False, "h", None, None)


@pytest.mark.parametrize("lines", [
    [f"HEAD {PATH} HTTP/1.1", "Host: h"],
    [f"OPTIONS {PATH} HTTP/1.1", "Host: h"],
    [f"GET {PATH} HTTP/1.0", "Host: h"],
    [f"GET {PATH} HTTP/1.1", "Host: h", "Connection: close"],
    [f"GET {PATH} HTTP/1.1"],  # no Host
    [f"POST {PATH} HTTP/1.1", "Host: h", "Transfer-Encoding: chunked"],
    [f"POST {PATH} HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 1"],
    [f"POST {PATH} HTTP/1.1", "Host: h", f"Content-Length: {MAX_BODY + 1}"],
    [f"POST {PATH} HTTP/1.1", "Host: h", "Content-Length: 1", "Expect: 100-continue"],
    ["GET /sessions/s1/agents/a1/api HTTP/1.1", "Host: h"],  # not under .../api/
    ["GET /sessions/s1/agents HTTP/1.1", "Host: h"],
    ["GET //sessions/s1/agents/a1/api/x HTTP/1.1", "Host: h"],
    ["GET http://h/sessions/s1/agents/a1/api/x HTTP/1.1", "Host: h"],  # absolute form
], ids=["head", "options", "http10", "close", "no-host", "chunked", "two-lengths", "large-body", "expect",
        "api-root", "api-route", "double-slash", "absolute"])
def test_requests_out_of_the_common_case_are_not_relayable(lines):
    head = read(*lines)
    assert head is None or relayable(head) is None


def test_heads_llhttp_refuses_or_that_switch_protocols_are_not_read():
    assert read(f"GET {PATH} HTTP/1.1", "Host: h", "Bad Header: x") is None
    assert read(f"GET {PATH} HTTP/1.1", "Host: h", "Connection: upgrade", "Upgrade: websocket") is None


def test_a_head_ends_at_its_blank_line_and_odd_framing_is_left_to_the_full_path():
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert head_end(b"GET / HTTP/1.1\nHost: x\n\n") == 0
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\n\r\n") == 0
