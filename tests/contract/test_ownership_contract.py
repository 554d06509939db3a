"""Sessions belong to the owner of their oldest agent, in every backend: another owner's create
in one is refused before anything is made (also when the session is full, so that the refusal
tells nothing of what it holds), callers allowed in every session (admins, shared sessions) are let
in without taking it over, and the owner is read back from the agents by a restarted proxy."""

from __future__ import annotations

import pytest

from agentproxy.backends.base import NotFound, SessionTaken
from agentproxy.backends.limits import CreateLimits

from .harness import Harness


async def refused(subject: Harness, agent_id: str, owner: str | None) -> None:
    with pytest.raises(SessionTaken) as info:
        await subject.backend.create(subject.spec(agent_id, owner=owner))
    assert (info.value.http_status, info.value.code, info.value.field) == (403, "forbidden", "session")
    assert "alice" not in info.value.message and "a1" not in info.value.message
    with pytest.raises(NotFound):
        await subject.backend.get("s1", agent_id)


async def test_a_session_belongs_to_the_owner_of_its_oldest_agent_across_a_restart(subject: Harness):
    backend = subject.backend
    await backend.create(subject.spec("a1", owner="alice"))
    await subject.ready("a1")
    await refused(subject, "b1", "bob")
    await refused(subject, "n1", None)  # an agent made without keys is nobody's either
    # Let in (an admin's create): the agent is its owner's, the session stays alice's.
    await backend.create(subject.spec("x1", owner="admin"), any_session=True)
    await backend.create(subject.spec("a2", owner="alice"))
    await subject.restart()
    await refused(subject, "b2", "bob")
    await subject.backend.create(subject.spec("a3", owner="alice"))
    listed = await subject.backend.list(session="s1")
    assert sorted((s.id, s.spec.owner) for s in listed) == [
        ("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("x1", "admin")]


async def test_a_full_session_of_another_owner_is_refused_as_another_owners(subject: Harness):
    backend = subject.backend
    backend.set_limits(CreateLimits(per_session=1))
    await backend.create(subject.spec("a1", owner="alice"))
    await refused(subject, "b1", "bob")
    assert [s.id for s in await backend.list()] == ["a1"]
