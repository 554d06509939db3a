"""Rolling back creates cut off half-way (:mod:`agentproxy.backends.k8s.rollback`).

The backend is a stand-in held in dicts (:class:`~agentproxy.backends.k8s.rollback.RollbackHost`):
what the rollbacks decide is under test here; the real backend against an API server that stops
answering runs in the e2e suite (``tests/e2e/test_faults.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from agentproxy.backends.base import AgentLocks, Unavailable
from agentproxy.backends.k8s.rollback import Rollbacks

ALL = [("StatefulSet", "agent-a1"), ("Service", "agent-a1-headless"), ("ConfigMap", "agent-a1-config")]
WITH_DATA = [*ALL, ("PersistentVolumeClaim", "data-agent-a1-0")]


class Host:
    """A backend whose objects are a dict, whose API server answers while ``answering``."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.objects = dict(objects or {})
        self.locks = AgentLocks()
        self.answering = True
        self.deleted: list[tuple[str, str]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def cached(self, kind: Any, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.name, name))

    async def delete_object(self, kind: Any, name: str) -> bool:
        if not self.answering:
            raise Unavailable("the API server does not answer")
        self.deleted.append((kind.name, name))
        return self.objects.pop((kind.name, name), None) is not None

    def spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.tasks.append(task)
        return task

    def caught_up(self) -> bool:
        return self.answering


def half_made(whole: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects of agent a1 after its StatefulSet was applied; ``whole`` when the claim and the
    Service are owned by it too (the create's last step)."""
    owned = {"ownerReferences": [{"uid": "sts-uid"}]} if whole else {}
    return {("StatefulSet", "agent-a1"): {"metadata": {"name": "agent-a1", "uid": "sts-uid"}},
            ("ConfigMap", "agent-a1-config"): {"metadata": {"name": "agent-a1-config", **owned}},
            ("Service", "agent-a1-headless"): {"metadata": {"name": "agent-a1-headless", **owned}}}


def rollbacks(host: Host) -> Rollbacks:
    return Rollbacks(host, check_interval=0.01, settle=0.01)


async def test_a_rollback_removes_the_statefulset_first_and_the_data_only_when_asked():
    host = Host(half_made())
    undo = rollbacks(host)
    await undo.now("a1", delete_data=False)
    assert host.deleted == ALL and host.objects == {}
    assert undo.done == 1

    again = Host({("PersistentVolumeClaim", "data-agent-a1-0"): {"metadata": {}}})
    undo = rollbacks(again)
    await undo.now("a1", delete_data=True)
    assert again.deleted == WITH_DATA and again.objects == {}
    assert undo.done == 1


async def test_a_rollback_that_finds_nothing_is_not_counted():
    host = Host()
    undo = rollbacks(host)
    await undo.now("a1", delete_data=False)
    assert host.deleted == ALL
    assert undo.done == 0


async def test_while_the_server_does_not_answer_the_rollback_waits_and_then_happens():
    host = Host(half_made())
    host.answering = False
    undo = rollbacks(host)
    await undo.now("a1", delete_data=False)
    assert host.deleted == [] and len(host.tasks) == 1
    await asyncio.sleep(0.1)
    assert host.deleted == []  # still waiting
    host.answering = True
    await asyncio.wait_for(host.tasks[0], 5)
    assert host.deleted == ALL and host.objects == {}
    assert undo.done == 1


async def test_an_agent_made_whole_meanwhile_is_left_alone():
    host = Host(half_made())
    host.answering = False
    undo = rollbacks(host)
    undo.later("a1", delete_data=True)
    host.objects = half_made(whole=True)  # another replica finished the create
    host.answering = True
    await asyncio.wait_for(host.tasks[0], 5)
    assert host.deleted == [] and undo.done == 0


async def test_a_create_that_finishes_settles_what_was_pending():
    host = Host(half_made())
    host.answering = False
    undo = rollbacks(host)
    undo.later("a1", delete_data=False)
    undo.settled("a1")  # a repeat of the create got to its end
    host.answering = True
    await asyncio.wait_for(host.tasks[0], 5)
    assert host.deleted == []


async def test_pending_rollbacks_share_one_task_and_keep_the_data_going_when_any_asked():
    host = Host({**half_made(), ("PersistentVolumeClaim", "data-agent-a1-0"): {"metadata": {}}})
    host.answering = False
    undo = rollbacks(host)
    undo.later("a1", delete_data=True)
    undo.later("a1", delete_data=False)
    assert len(host.tasks) == 1
    host.answering = True
    await asyncio.wait_for(host.tasks[0], 5)
    assert host.deleted == WITH_DATA


async def test_the_rollback_waits_for_the_agents_lock():
    host = Host(half_made())
    host.answering = False
    undo = rollbacks(host)
    undo.later("a1", delete_data=False)
    async with host.locks.hold("a1"):  # a create or delete of a1 under way here
        host.answering = True
        await asyncio.sleep(0.1)
        assert host.deleted == []
    await asyncio.wait_for(host.tasks[0], 5)
    assert host.deleted == ALL
