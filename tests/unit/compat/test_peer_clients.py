"""Clients of the Go agentapi-proxy against agentproxy's layer and against the peer itself.

Each comparison runs the same client against both servers in the same run, with the
real agentapi and the echo demo agent behind each, and asserts equal answers (ids,
times, ports and the host in agentapi's ``$schema`` links aside): the peer's own
``client`` CLI, the request sequence of agentapi-ui, and ``/search``'s filters.
Owner scoping and the first message are agentproxy's alone (see each test).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest

from .servers import Server, peer_client, peer_client_events

# One worker runs them all: the servers are module fixtures, each a few seconds to start, which a
# second worker would start again for the tests it got.
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("compat-servers")]

BOOT_LIMIT = 60.0
"""Seconds an agent may take to become stable (a bound, not a measurement)."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_SCHEMA_HOST = re.compile(r"https?://[^/\"]+/schemas/")


def normalized(text: str) -> str:
    """``text`` without what differs by nature between two runs: ids, times, and the host
    agentapi was asked with (the peer passes the client's ``Host``, agentproxy ``localhost``)."""
    return _SCHEMA_HOST.sub("http://HOST/schemas/", _TIME.sub("TIME", _UUID.sub("ID", text)))


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=30), **kwargs) as answer:
        body = await answer.read()
        try:
            return answer.status, await answer.json(content_type=None) if body else None
        except ValueError:
            return answer.status, body.decode(errors="replace")


async def start(http: aiohttp.ClientSession, server: Server, body: dict | None = None, **kwargs: Any) -> str:
    status, answer = await call(http, "POST", f"{server.url}/start", json=body or {}, **kwargs)
    assert status == 200, (server.name, answer)
    return answer["session_id"]


async def until(check, what: str, limit: float = BOOT_LIMIT, every: float = 0.5) -> Any:
    deadline = time.monotonic() + limit
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(every)


async def until_stable(http: aiohttp.ClientSession, server: Server, session_id: str, **kwargs: Any) -> None:
    """Poll ``/{id}/status`` as agentapi-ui does after ``/start``: errors while the agent boots are
    harmless (the peer answers 502, agentproxy 503), until agentapi says ``stable``."""
    async def stable():
        status, body = await call(http, "GET", f"{server.url}/{session_id}/status", **kwargs)
        return status == 200 and body["status"] == "stable"
    await until(stable, f"session {session_id} of {server.name} to be stable")


async def delete(http: aiohttp.ClientSession, server: Server, session_id: str, **kwargs: Any) -> None:
    status, body = await call(http, "DELETE", f"{server.url}/sessions/{session_id}", **kwargs)
    assert status == 200, body


async def test_the_peers_own_client_behaves_alike_against_both(both):
    async with aiohttp.ClientSession() as http:
        ids = [await start(http, server) for server in both]
        await asyncio.gather(*(until_stable(http, server, sid) for server, sid in zip(both, ids, strict=True)))
        transcripts = []
        for server, sid in zip(both, ids, strict=True):
            runs = {
                "status": peer_client(server, sid, "status"),
                "send": peer_client(server, sid, "send", "hello from the client"),
                "history": peer_client(server, sid, "history"),
            }
            transcript: dict[str, Any] = {name: (run.returncode, normalized(run.stdout), normalized(run.stderr))
                          for name, run in runs.items()}
            transcript["events"] = normalized(peer_client_events(server, sid, lines=2))
            transcripts.append(transcript)
        for server, sid in zip(both, ids, strict=True):
            await delete(http, server, sid)
    ours, peers = transcripts
    assert ours == peers
    assert ours["status"] == (0, "Agent Status: stable\n", "")
    events = ours["events"].splitlines()
    assert events[0] == "Monitoring events... (Press Ctrl+C to stop)"
    assert "agentproxy echo agent" in events[1] and events[2] == '[EVENT] {"status":"stable","agent_type":"claude"}'
    # The client of v1.73.0 and agentapi v0.12.1 disagree on both servers alike: it sends a
    # `timestamp` agentapi refuses, and reads message ids (numbers) as strings.
    assert "status 422" in ours["send"][2] and "body.timestamp" in ours["send"][2]
    assert "cannot unmarshal number into Go struct field Message.messages.id of type string" in ours["history"][2]


async def agentapi_ui_sequence(http: aiohttp.ClientSession, server: Server) -> list[tuple]:
    """What agentapi-ui v1.33.0 sends to create a session and chat, and what it reads of the answers."""
    auth = {"Authorization": "Bearer ui-key"}  # it always sends its key; both servers run without keys here
    steps: list[tuple] = []
    # Without the `repository` tag it may send: the peer would clone that repository from GitHub.
    status, body = await call(http, "POST", f"{server.url}/start", headers=auth, json={
        "environment": {"UI_SESSION": "1"}, "metadata": {"description": "fix the build"},
        "tags": {"description": "fix the build"}})
    steps.append(("start", status, sorted(body)))
    session_id = body["session_id"]
    status, body = await call(http, "GET", f"{server.url}/search?limit=1000", headers=auth)
    [mine] = [s for s in body["sessions"] if s["session_id"] == session_id]
    steps.append(("search", status, mine["status"], mine["user_id"], mine["tags"]))
    await until_stable(http, server, session_id, headers=auth)
    status, body = await call(http, "GET", f"{server.url}/{session_id}/messages?limit=100", headers=auth)
    steps.append(("messages", status, [(m["id"], m["role"]) for m in body["messages"]]))
    status, body = await call(http, "POST", f"{server.url}/{session_id}/message", headers=auth,
                              json={"content": "hello from the ui", "type": "user"})
    steps.append(("message", status, body.get("ok")))

    async def answered():  # the chat view polls messages and status once a second
        _, state = await call(http, "GET", f"{server.url}/{session_id}/status", headers=auth)
        _, body = await call(http, "GET", f"{server.url}/{session_id}/messages?limit=100", headers=auth)
        replies = [m["content"].strip() for m in body["messages"] if m["role"] == "agent"]
        return state["status"] == "stable" and "echo: hello from the ui" in replies and body
    body = await until(answered, f"the echo of {server.name}'s agent", every=1.0)
    steps.append(("conversation", [(m["role"], m["content"].strip()) for m in body["messages"][1:]]))
    status, body = await call(http, "DELETE", f"{server.url}/sessions/{session_id}", headers=auth)
    steps.append(("delete", status, body["status"]))
    status, body = await call(http, "GET", f"{server.url}/search?limit=1000", headers=auth)
    steps.append(("search after delete", status, session_id in {s["session_id"] for s in body["sessions"]}))
    status, body = await call(http, "GET", f"{server.url}/{session_id}/status", headers=auth)
    steps.append(("status after delete", status, body["message"]))
    return steps


async def test_agentapi_ui_creates_a_session_and_chats_alike_on_both(both):
    async with aiohttp.ClientSession() as http:
        ours, peers = await asyncio.gather(*(agentapi_ui_sequence(http, server) for server in both))
    assert ours == peers
    assert ours == [
        ("start", 200, ["session_id"]),
        ("search", 200, "active", "anonymous", {"description": "fix the build"}),
        ("messages", 200, [(0, "agent")]),
        ("message", 200, True),
        ("conversation", [("user", "hello from the ui"), ("agent", "echo: hello from the ui")]),
        ("delete", 200, "terminated"),
        ("search after delete", 200, False),
        ("status after delete", 404, "Session not found"),
    ]


SEARCHES = ["", "?tag.team=red", "?tag.team=red&tag.kind=feature", "?status=active", "?status=failed",
            "?tag.team=blue", "?tag.kind=bug&status=active&page=2&limit=1&user_id=someone"]


async def search_results(http: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    """Three sessions (two tagged), then each search as the labels of the sessions found."""
    labels = {}
    for label, tags in (("bug", {"team": "red", "kind": "bug"}), ("feature", {"team": "red", "kind": "feature"}),
                        ("untagged", None)):
        labels[await start(http, server, {"tags": tags} if tags else {})] = label
    results: dict[str, Any] = {}
    for query in SEARCHES:
        status, body = await call(http, "GET", f"{server.url}/search{query}")
        assert status == 200, body
        results[query] = [labels[s["session_id"]] for s in body["sessions"] if s["session_id"] in labels]
    _, body = await call(http, "GET", f"{server.url}/search")
    results["infos"] = {labels[s["session_id"]]: (s["status"], s["user_id"], s["tags"], isinstance(s["port"], int))
                        for s in body["sessions"] if s["session_id"] in labels}
    results["fields"] = sorted(body["sessions"][0])
    for session_id in labels:
        await delete(http, server, session_id)
    return results


async def test_search_filters_alike_on_both(both):
    async with aiohttp.ClientSession() as http:
        ours, peers = await asyncio.gather(*(search_results(http, server) for server in both))
    # agentproxy adds created_at and updated_at, which agentapi-ui reads and the peer never sent.
    assert ours.pop("fields") == sorted(peers.pop("fields") + ["created_at", "updated_at"])
    assert ours == peers
    assert ours[""] == ours["?status=active"] == ["untagged", "feature", "bug"]  # newest first
    assert ours["?tag.team=red"] == ["feature", "bug"]
    assert ours["?tag.team=red&tag.kind=feature"] == ["feature"]
    assert ours["?status=failed"] == ours["?tag.team=blue"] == []
    assert ours["?tag.kind=bug&status=active&page=2&limit=1&user_id=someone"] == ["bug"]
    assert ours["infos"]["untagged"] == ("active", "anonymous", None, True)


async def test_the_first_message_reaches_the_agent(agentproxy_server):
    """``/start``'s ``message`` (the tag ``message`` wins) is the agent's first prompt. The peer
    posts it after polling agentapi's ``/health``, which agentapi v0.12.1 does not serve, so it
    gives up; this one is agentproxy's alone."""
    server = agentproxy_server
    async with aiohttp.ClientSession() as http:
        session_id = await start(http, server, {"message": "from the body", "tags": {"message": "from the tag"}})

        async def echoed():
            status, body = await call(http, "GET", f"{server.url}/{session_id}/messages")
            return status == 200 and [(m["role"], m["content"].strip()) for m in body["messages"][1:]]
        conversation = await until(lambda: _at_least(echoed, 2), "the first message to be answered")
        assert conversation[:2] == [("user", "from the tag"), ("agent", "echo: from the tag")]
        await delete(http, server, session_id)


async def _at_least(fetch, count: int):
    found = await fetch()
    return found if found and len(found) >= count else None


async def test_owner_scoping_with_two_keys(keyed_server):
    """A non-admin key sees and reaches only its own sessions, an admin all, as in the peer's rules.
    (The peer v1.73.0 itself answers 401 to every configured static key, so this runs on agentproxy.)"""
    server, keys = keyed_server, keyed_server.keys
    alice, bob = {"X-API-Key": keys["alice"]}, {"Authorization": f"Bearer {keys['bob']}"}
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    async with aiohttp.ClientSession() as http:
        mine = await start(http, server, {"tags": {"owner": "alice"}}, headers=alice)
        theirs = await start(http, server, headers=bob)

        async def visible(headers):
            status, body = await call(http, "GET", f"{server.url}/search", headers=headers)
            assert status == 200, body
            return {s["session_id"]: s["user_id"] for s in body["sessions"]}
        assert await visible(alice) == {mine: "alice"}
        assert await visible(bob) == {theirs: "bob"}
        assert await visible(admin) == {mine: "alice", theirs: "bob"}
        assert await call(http, "GET", f"{server.url}/search?tag.owner=alice", headers=bob) == (200, {"sessions": []})

        await until_stable(http, server, mine, headers=alice)
        status, body = await call(http, "GET", f"{server.url}/{mine}/status", headers=bob)
        assert (status, body["message"]) == (403, "You can only access your own sessions")
        status, body = await call(http, "DELETE", f"{server.url}/sessions/{mine}", headers=bob)
        assert (status, body["message"]) == (403, "You can only delete your own sessions")
        assert (await call(http, "GET", f"{server.url}/{mine}/status", headers=admin))[0] == 200

        for method, path in (("GET", "/search"), ("POST", "/start"), ("GET", f"/{mine}/status"),
                             ("DELETE", f"/sessions/{mine}")):
            assert (await call(http, method, f"{server.url}{path}"))[0] == 401, path
            assert (await call(http, method, f"{server.url}{path}", headers={"X-API-Key": "wrong"}))[0] == 401
        # As in the peer: /health and CORS preflights need no key.
        assert await call(http, "GET", f"{server.url}/health") == (200, {"status": "ok"})
        preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
        assert (await call(http, "OPTIONS", f"{server.url}/{mine}/message", headers=preflight))[0] == 204
        assert (await call(http, "OPTIONS", f"{server.url}/start", headers=preflight))[0] == 204

        # agentproxy's own API refuses an agent whose id would name a route while the layer is on.
        status, body = await call(http, "POST", f"{server.url}/sessions/s1/agents", headers=admin, json={"id": "start"})
        assert (status, body["error"]["field"]) == (400, "id")

        status, agents = await call(http, "GET", f"{server.url}/agents", headers=alice)
        assert [(a["id"], a["owner"], a["session"]) for a in agents["agents"]] == [(mine, "alice", "agentapi-proxy")]
        await delete(http, server, mine, headers=alice)
        await delete(http, server, theirs, headers=bob)
        assert await visible(admin) == {}
