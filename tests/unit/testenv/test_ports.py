"""The tests' ports: a range of its own for each pytest-xdist worker, apart from the kernel's
ephemeral ports, handed out in turn and free when handed out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agentproxy.backends.local.ports import port_is_free
from testenv import ports
from testenv.ports import free_block, free_port, worker_range


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_the_workers_ranges_are_disjoint_and_cover_the_span_without_gaps(count):
    ranges = [worker_range(f"gw{index}", str(count)) for index in range(count)]
    assert ranges[0].start == ports.FIRST and ranges[-1].stop <= ports.END
    for earlier, later in zip(ranges, ranges[1:], strict=False):
        assert earlier.stop == later.start and len(earlier) == len(later) > 0


def test_a_process_that_is_no_worker_has_the_whole_span():
    assert worker_range("", "") == range(ports.FIRST, ports.END)
    assert worker_range("master", "2") == range(ports.FIRST, ports.END)
    assert worker_range("gw1", "") == range(ports.FIRST, ports.END)


def test_the_span_is_below_the_kernels_ephemeral_ports():
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if path.exists():
        low = int(path.read_text().split()[0])
        assert ports.END <= low, f"the kernel hands out ports from {low}: testenv.ports would meet them"
    assert ports.END <= 30000  # Kubernetes' NodePorts begin there


def test_blocks_are_free_within_this_workers_range_and_never_overlap():
    mine = worker_range()
    taken: set[int] = set()
    for size in (1, 2, 16, 64, 1, 20):
        first, last = free_block(size)
        block = set(range(first, last + 1))
        assert len(block) == size and block <= set(mine)
        assert all(port_is_free(port) for port in block)
        assert not block & taken
        taken |= block
    assert free_port() not in taken


def test_a_port_something_listens_on_is_passed_over():
    first, _ = free_block(1)
    # The next ports in turn: hold the first of them, as another program would.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first + 1))
        squatter.listen()
        handed = [free_port() for _ in range(3)]
    assert first + 1 not in handed


def test_a_mostly_free_block_may_hold_a_busy_port_but_never_first():
    first, _ = free_block(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first + 3))
        squatter.listen()
        start, last = free_block(4, mostly=True)
        assert port_is_free(start) and last == start + 3


def test_a_block_larger_than_the_range_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        free_block(len(worker_range()) + 1)
