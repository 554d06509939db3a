"""The first-message tracker tells its owner whenever what it says of an agent changes: the
agent becomes overdue, and while overdue, the agentapi status its message names changes (a
backend that keeps each agent's state derives it again then, see the k8s index)."""

from __future__ import annotations

import asyncio

import aiohttp

from agentproxy.backends.conversation import STATUS, FirstMessageTracker
from testenv.ports import free_port


async def test_overdue_and_each_status_change_while_overdue_are_told():
    told: list[str] = []
    async with aiohttp.ClientSession() as client:
        tracker = FirstMessageTracker(client, 0.05, told.append)
        # Nothing listens on this port: the follower keeps retrying, as it does while an agent's
        # agentapi is not up, and the message never arrives.
        tracker.observe("a1", "hello", ready=True, upstream=f"http://127.0.0.1:{free_port()}")
        for _ in range(100):
            if told:
                break
            await asyncio.sleep(0.02)
        assert told == ["a1"] and "agentapi status: unknown" in (tracker.overdue("a1") or "")
        follower = tracker._followers["a1"][0]
        follower.status = "stable"
        follower.on_change(STATUS)  # what the follower reports when agentapi's status changes
        assert told == ["a1", "a1"] and "agentapi status: stable" in (tracker.overdue("a1") or "")
        tracker.observe("a1", "hello", ready=False, upstream=None)  # no longer ready: not overdue
        assert told == ["a1", "a1", "a1"] and tracker.overdue("a1") is None
        await tracker.close()
