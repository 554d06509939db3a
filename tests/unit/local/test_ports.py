"""Port allocation: unique under concurrency, skips ports in use, a clear error when full."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agentproxy.backends.base import Unavailable
from agentproxy.backends.local.ports import PortAllocator, port_is_free


async def test_concurrent_allocations_get_distinct_ports(ports):
    allocator = PortAllocator(*ports)
    got = await asyncio.gather(*(allocator.allocate(f"a{i}") for i in range(40)))
    assert len(set(got)) == 40
    assert all(ports[0] <= p <= ports[1] for p in got)
    assert allocator.assigned == {port: f"a{i}" for i, port in enumerate(got)}


async def test_ports_in_use_by_other_programs_are_skipped(ports):
    start = ports[0]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", start))
        squatter.listen()
        assert not port_is_free(start)
        allocator = PortAllocator(start, start + 2)
        assert await allocator.allocate("a") == start + 1


async def test_a_full_range_is_unavailable_with_a_clear_message(ports):
    start = ports[0]
    allocator = PortAllocator(start, start + 1)
    await allocator.allocate("a")
    await allocator.allocate("b")
    with pytest.raises(Unavailable) as info:
        await allocator.allocate("c")
    assert info.value.http_status == 503
    assert info.value.message == (f"no free port in local_mode.ports {start}-{start + 1}: 2 assigned to agents, "
                                  "0 in use by other programs; delete agents or widen the range")


async def test_released_ports_come_back_after_the_rest_of_the_range(ports):
    start = ports[0]
    allocator = PortAllocator(start, start + 2)
    first = await allocator.allocate("a")
    allocator.release(first, "a")
    # Not handed out again at once: clients of the deleted agent may still knock.
    assert await allocator.allocate("b") == start + 1
    assert await allocator.allocate("c") == start + 2
    assert await allocator.allocate("d") == first


async def test_claim_and_release_respect_owners(ports):
    start = ports[0]
    allocator = PortAllocator(start, start + 3)
    assert allocator.claim(start + 2, "a")
    assert allocator.claim(start + 2, "a")  # idempotent for its owner
    assert not allocator.claim(start + 2, "b")
    assert not allocator.claim(start + 10, "b")  # outside the range
    allocator.release(start + 2, "b")  # not b's: ignored
    assert allocator.owner_of(start + 2) == "a"
    assert start + 2 not in {await allocator.allocate(f"x{i}") for i in range(3)}
    with pytest.raises(ValueError):
        PortAllocator(10, 9)
