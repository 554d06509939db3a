"""A writer reads its own write back from the watch cache: ``wait_seen`` returns once the
store holds the object at the version the server answered (or a later one, or no longer holds
it), False after its timeout, and at once while the watch is down. A suspend followed at once
by a resume relies on it: the resume decides from the cache whether there is anything to do.
The events go through a real reflector that never connects (no cluster here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentproxy.backends.k8s.cache import NamespaceCache, version_reached
from agentproxy.backends.k8s.kinds import SECRET, STATEFULSET


def statefulset(version: int, replicas: int = 1) -> dict[str, Any]:
    return {"kind": "StatefulSet", "metadata": {"name": "agent-a1", "resourceVersion": str(version)},
            "spec": {"replicas": replicas}}


@pytest.fixture
def reflector():
    cache = NamespaceCache(None, "ns1", lambda kind, event, obj: None)  # type: ignore[arg-type]  # no API server
    reflector = cache.reflectors[STATEFULSET.name]
    reflector.healthy = True  # as while a watch runs
    return cache, reflector


async def test_a_waiting_writer_returns_once_the_watch_shows_its_version(reflector):
    cache, reflector = reflector
    await reflector._handle({"type": "ADDED", "object": statefulset(10)})
    waiting = asyncio.create_task(cache.wait_seen(STATEFULSET, "agent-a1", "12", timeout=30))
    await reflector._handle({"type": "MODIFIED", "object": statefulset(11)})  # someone else's, earlier
    await asyncio.sleep(0)
    assert not waiting.done()
    await reflector._handle({"type": "MODIFIED", "object": statefulset(12, replicas=0)})
    assert await waiting is True
    assert cache.get(STATEFULSET, "agent-a1")["spec"]["replicas"] == 0
    assert not reflector._seen  # nobody left waiting


async def test_a_version_already_stored_or_passed_needs_no_wait(reflector):
    cache, reflector = reflector
    await reflector._handle({"type": "ADDED", "object": statefulset(15)})
    assert await cache.wait_seen(STATEFULSET, "agent-a1", "15", timeout=0.01) is True
    assert await cache.wait_seen(STATEFULSET, "agent-a1", "14", timeout=0.01) is True


async def test_a_deleted_object_ends_the_wait(reflector):
    cache, reflector = reflector
    await reflector._handle({"type": "ADDED", "object": statefulset(3)})
    waiting = asyncio.create_task(cache.wait_seen(STATEFULSET, "agent-a1", "4", timeout=30))
    await asyncio.sleep(0)
    await reflector._handle({"type": "DELETED", "object": statefulset(5)})
    assert await waiting is True


async def test_the_wait_is_bounded_and_skipped_while_the_watch_is_down(reflector):
    cache, reflector = reflector
    await reflector._handle({"type": "ADDED", "object": statefulset(3)})
    assert await cache.wait_seen(STATEFULSET, "agent-a1", "9", timeout=0.05) is False
    assert not reflector._seen
    reflector.healthy = False
    waited = asyncio.get_running_loop().time()
    assert await cache.wait_seen(STATEFULSET, "agent-a1", "9", timeout=30) is False
    assert asyncio.get_running_loop().time() - waited < 30  # returned at once, not at the timeout


async def test_a_kind_the_cache_does_not_hold_is_not_waited_for(reflector):
    cache, _ = reflector
    assert await cache.wait_seen(SECRET, "agent-a1-credentials", "7", timeout=30) is True


def test_versions_compare_as_etcd_integers_and_otherwise_only_by_equality():
    assert version_reached("12", "12") and version_reached("13", "12") and not version_reached("11", "12")
    assert version_reached("9", "9") and not version_reached("100", "99x")
    assert version_reached("abc", "abc") and not version_reached("abd", "abc")
