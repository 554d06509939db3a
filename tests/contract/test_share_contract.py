"""Sharing an agent that exists, the same for every backend: the group changes while the agent
runs on (the same process or pod at the same address, nothing restarted) and survives a
restart of the proxy; an agent shared while suspended stays suspended."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus

from .harness import Harness


async def _group_is(subject: Harness, group: str | None) -> bool:
    return (await subject.backend.get("s1", "a1")).spec.group == group


async def test_sharing_an_agent_changes_its_group_and_nothing_else(subject: Harness):
    await subject.backend.create(subject.spec("a1", owner="alice"))
    ready = await subject.ready("a1")
    shared = await subject.backend.share("s1", "a1", "ml")
    assert (shared.spec.group, shared.spec.owner, shared.status) == ("ml", "alice", AgentStatus.READY)
    assert shared.upstream == ready.upstream and shared.created_at == ready.created_at  # it ran on
    await subject.until("the share to be seen", lambda: _group_is(subject, "ml"))
    assert (await subject.backend.share("s1", "a1", "ml")).spec.group == "ml"  # a no-op
    assert (await subject.backend.get("s1", "a1")).upstream == ready.upstream

    await subject.restart()
    again = await subject.ready("a1")
    assert again.spec.group == "ml" and again.upstream == ready.upstream

    await subject.backend.suspend("s1", "a1")
    await subject.status("a1", AgentStatus.SUSPENDED)
    unshared = await subject.backend.share("s1", "a1", None)
    assert unshared.spec.group is None and unshared.suspended
    await subject.until("the unshare to be seen", lambda: _group_is(subject, None))
    assert (await subject.backend.get("s1", "a1")).status is AgentStatus.SUSPENDED
