"""Loopback ports for tests and benchmarks that must name a port before anything listens on it.

A socket bound to port 0 gets a port no one else holds, but only while it stays open: a
server started afterwards (``agentproxy serve`` in a subprocess, agentapi, a local backend's
agents, the Go peer) needs the number first, and a port looked up and let go can be taken by
anyone meanwhile, another pytest-xdist worker above all. So every test and benchmark that
names a port takes it from here:

- each pytest-xdist worker hands out ports from a range of its own (``PYTEST_XDIST_WORKER``
  ``gwN`` of ``PYTEST_XDIST_WORKER_COUNT``; a run without workers has the whole span), so two
  workers of one run never hand out the same port;
- the span, :data:`FIRST` to :data:`END`, lies below the kernel's ephemeral ports
  (``/proc/sys/net/ipv4/ip_local_port_range``, 32768 and up by default), from which every
  outgoing connection and every bind to port 0 gets its port, and below Kubernetes' NodePorts
  (30000-32767) and the test cluster's ports (32300 and up): nothing but these helpers' callers
  picks ports there;
- within its range a process hands out ports in turn (a port is not handed out again before
  the range has gone round), from a point chosen by its process id, so test runs of other
  checkouts on the same machine (whose workers have the same names) seldom start at the same
  place; a port something listens on is passed over.
"""

from __future__ import annotations

import os
import random
import re
import threading

from agentproxy.backends.local.ports import port_is_free

FIRST = 20000
END = 30000
"""The span of every worker's range: ``FIRST`` up to, not including, ``END``."""

_lock = threading.Lock()
_cursor: int | None = None


def worker_range(worker: str | None = None, count: str | None = None) -> range:
    """The ports of this process's pytest-xdist worker (from the environment when not given):
    worker ``gwN`` of ``count`` gets the N-th of ``count`` equal slices of the span; a process
    that is no worker gets the whole span."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "") if count is None else count
    match = re.fullmatch(r"gw(\d+)", worker)
    if match is None or not count.isdigit() or int(count) < 1:
        return range(FIRST, END)
    size = (END - FIRST) // int(count)
    index = int(match[1]) % int(count)
    return range(FIRST + index * size, FIRST + (index + 1) * size)


def _take(size: int, ports: range) -> int:
    """The first port of the next ``size`` ports of ``ports`` in turn."""
    global _cursor
    with _lock:
        if _cursor is None or _cursor not in ports:
            _cursor = ports.start + random.Random(os.getpid()).randrange(len(ports))
        if _cursor + size > ports.stop:
            _cursor = ports.start
        start = _cursor
        _cursor += size
    return start


def free_block(size: int, *, mostly: bool = False) -> tuple[int, int]:
    """The first and last port of ``size`` adjacent ports of this worker's range, all free (with
    ``mostly``: the first free and at least half of the others, for a server whose agents
    pass over busy ports)."""
    ports = worker_range()
    if not 1 <= size <= len(ports):
        raise ValueError(f"a block of {size} ports does not fit in {ports.start}-{ports.stop - 1}")
    for _ in range(len(ports) // size + 1):  # once round the range
        start = _take(size, ports)
        if not port_is_free(start):
            continue
        free = 1 + sum(port_is_free(port) for port in range(start + 1, start + size))
        if free == size or (mostly and free >= (size + 1) // 2):
            return start, start + size - 1
    raise RuntimeError(f"no block of {size} free ports in {ports.start}-{ports.stop - 1}")


def free_port() -> int:
    """One free port of this worker's range."""
    return free_block(1)[0]
