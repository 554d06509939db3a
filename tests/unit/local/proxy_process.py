"""A proxy in a process of its own, for tests that kill it: ``python -m
tests.unit.local.proxy_process DATA_DIR LAUNCHER PORT_START PORT_END AGENT_ID...`` from the
repository's root.

It starts a local backend, creates the agents (type ``serve``), waits until they are
ready, prints one JSON line ``{agent_id: pid}`` and then waits to be killed (at most
``LIFETIME`` seconds).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.backend import LocalBackend
from tests.unit.local.support import make_settings, spec

LIFETIME = 60.0


async def main(data_dir: str, launcher: str, start: int, end: int, ids: list[str]) -> None:
    settings = make_settings(Path(data_dir), launcher, (start, end))
    backend = LocalBackend(settings)
    await backend.start()
    for agent_id in ids:
        await backend.create(spec(settings, agent_id))
    deadline = time.monotonic() + 30
    pids = {}
    for agent_id in ids:
        while (state := await backend.get("s1", agent_id)).status is not AgentStatus.READY:
            if time.monotonic() > deadline:
                raise SystemExit(f"{agent_id} did not get ready: {state}")
            await asyncio.sleep(0.05)
        pids[agent_id] = state.details["pid"]
    print(json.dumps(pids), flush=True)
    await asyncio.sleep(LIFETIME)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]))
