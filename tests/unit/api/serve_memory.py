"""``agentproxy serve``'s server over the in-memory backend, in a process of its own, for the test
that stops it with SIGTERM: ``python -m tests.unit.api.serve_memory`` from the repository's root.
It prints ``port N`` once it listens, and ``backend closed: True`` once the server has stopped
and closed its backend."""

from __future__ import annotations

import asyncio

from agentproxy.api.serve import run_server
from agentproxy.settings import Settings
from tests.unit.api.memory_backend import MemoryBackend


def listening(addresses: list[tuple[str, int]]) -> None:
    print("port", addresses[0][1], flush=True)


if __name__ == "__main__":
    backend = MemoryBackend()
    asyncio.run(run_server(Settings(), backend, host="127.0.0.1", port=0, on_listening=listening))
    print("backend closed:", backend.closed, flush=True)
