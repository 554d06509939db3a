"""What the proxy's hot path promises beyond what it passes: connections to an agent are kept
and reused, both sides of a proxied request have Nagle's algorithm off, and `serve` runs on
uvloop where it is installed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agentproxy.api.app import CONTEXT
from agentproxy.api.serve import event_loop_runner

from .conftest import API


def _nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


async def test_sequential_requests_reuse_one_connection_to_the_agent(agent_api):
    pool = agent_api.server.app[CONTEXT].client
    for _ in range(5):
        response = await agent_api.get(f"{API}/status")
        assert response.status == 200
        await response.read()
    assert pool.connections == 1
    # Ten at once need ten connections; they are kept for the next ones.
    answers = await asyncio.gather(*(agent_api.get(f"{API}/status") for _ in range(10)))
    for response in answers:
        await response.read()
    opened = pool.connections
    assert 1 <= opened <= 10
    answers = await asyncio.gather(*(agent_api.get(f"{API}/status") for _ in range(10)))
    for response in answers:
        await response.read()
    assert pool.connections == opened


async def test_both_sides_of_a_proxied_request_send_at_once(agent_api):
    response = await agent_api.get(f"{API}/status")
    await response.read()
    upstream = [conn.transport.get_extra_info("socket") for conn in agent_api.server.app[CONTEXT].client._open]
    clients = [handler.transport.get_extra_info("socket") for handler in agent_api.server.runner.server.connections
               if handler.transport is not None]
    assert upstream and clients
    assert all(_nodelay(sock) for sock in upstream + clients)


def test_serve_runs_on_uvloop_where_it_is_installed():
    import uvloop  # a dependency wherever the tests run (Linux, CPython)

    with event_loop_runner("auto") as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
    with event_loop_runner("asyncio") as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)
    with pytest.raises(ValueError, match="loop: must be one of auto, uvloop, asyncio"):
        event_loop_runner("fast")
