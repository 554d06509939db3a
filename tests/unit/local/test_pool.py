"""Warm pools in local mode, with the real agentapi, the real launcher and real agent programs:
claims bind without a restart, refill, survive a restart of the proxy, and stay out of lists."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.launch import state_file
from agentproxy.pools import READY, WARM
from agentproxy.settings import Settings
from tests.conversation import agent_said

from .support import assert_nothing_left, spec, wait_ready, wait_until


def ready_members(backend: LocalBackend, pool: str | None = None) -> list[str]:
    pools = backend._pools
    assert pools is not None
    return sorted(m.id for m in pools.members.values() if m.state == READY and (pool is None or m.pool == pool))


def member_count(backend: LocalBackend) -> dict[str, float]:
    """``pool/state`` to the number of members the metrics show."""
    return {dict(s.labels)["pool"] + "/" + dict(s.labels)["state"]: s.value
            for s in backend.metrics() if s.name == "pool_members"}


async def drain(backend: LocalBackend) -> None:
    """Remove every member (what a pool that was removed from the settings does)."""
    pools = backend._pools
    if pools is not None:
        pools.pools = {}
        pools.wake()
        await wait_until(lambda: pools.empty, timeout=60, what="the pools drained")


async def start(settings: Settings) -> LocalBackend:
    instance = LocalBackend(settings)
    await instance.start()
    return instance


@pytest.fixture
async def pooled(settings: Settings, tmp_path: Path) -> AsyncIterator[Any]:
    """Backends of the test's settings, whatever is left of them removed after the test."""
    made: list[LocalBackend] = []

    async def make(pools: list[dict[str, Any]]) -> LocalBackend:
        settings.pools = pools
        instance = await start(settings)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        if instance._started:
            await drain(instance)
            for state in await instance.list():
                await instance.delete(state.session, state.id)
            await instance.close()
    await assert_nothing_left(tmp_path, timeout=15)


async def test_a_claim_binds_env_and_first_message_without_a_restart(pooled, settings):
    backend = await pooled([{"name": "echo", "size": 2, "agent": "echo"}, {"name": "env", "size": 1, "agent": "env"}])
    await wait_until(lambda: len(ready_members(backend, "echo")) == 2 and len(ready_members(backend, "env")) == 1,
                     timeout=60, what="the pools to fill")
    assert await backend.list() == []  # members are nobody's agents
    assert member_count(backend)["echo/ready"] == 2
    members = ready_members(backend, "echo")
    launcher_pids = {m.id: m.process.pid for m in backend._pools.members.values()}

    state = await backend.create(spec(settings, "ignored", "echo", message="hello warm"), names_id=False)
    assert state.details["start"] == WARM and state.details["pool"] == "echo"
    assert state.id in members
    state = await wait_ready(backend, state.id)
    assert state.details["pid"] == launcher_pids[state.id]  # the member's own process: not restarted
    # Its start is its claim's steps, not the member's start replayed.
    record = backend.progress.get(state.id)
    assert record is not None
    await wait_until(lambda: record.ended, timeout=30, what="the start's last step")
    assert [s.name for s in record.steps] == ["claimed", "bound", "agentapi_answering", "restored",
                                              "first_message_delivered", "ready"], record.to_json()
    assert "'echo'" in record.steps[0].message and "took the binding" in record.steps[1].message
    async with aiohttp.ClientSession() as client:
        assert state.upstream is not None
        await agent_said(client, state.upstream, "echo: hello warm")
    # The proxy's saves (SIGUSR1 to the agent's process, the launcher) reach agentapi: the answer is on disk
    # while the agent runs.
    saved = Path(state_file(state.details["work_dir"]))
    await wait_until(lambda: saved.exists() and "echo: hello warm" in saved.read_text(), timeout=30,
                     what="the conversation saved")

    env_state = await backend.create(spec(settings, "x", "env", session="s2", env={"OWNER_SETTING": "mine"}),
                                     names_id=False)
    assert env_state.details["start"] == WARM
    env_file = Path(env_state.details["work_dir"]) / "env.json"
    await wait_until(env_file.exists, timeout=30, what="the agent's environment")
    seen = json.loads(env_file.read_text())
    assert seen["OWNER_SETTING"] == "mine"
    assert seen["AGENTPROXY_AGENT_ID"] == env_state.id and seen["AGENTPROXY_SESSION"] == "s2"
    assert "AGENTPROXY_BINDING_TOKEN" not in seen
    token_dir = Path(settings.local_mode.data_dir) / "pool"
    assert not any(token in json.dumps(seen) for token in (p.read_text() for p in token_dir.glob("*.token")))

    # The pools fill again, with new members.
    await wait_until(lambda: len(ready_members(backend, "echo")) == 2 and len(ready_members(backend, "env")) == 1,
                     timeout=60, what="the pools to refill")
    assert state.id not in ready_members(backend)
    assert sorted(s.id for s in await backend.list()) == sorted([state.id, env_state.id])


async def test_creates_naming_an_id_or_of_another_shape_are_cold(pooled, settings):
    backend = await pooled([{"name": "echo", "size": 1, "agent": "echo"}])
    await wait_until(lambda: len(ready_members(backend)) == 1, timeout=60, what="the pool to fill")
    named = await backend.create(spec(settings, "named", "echo"), names_id=True)
    assert named.details["start"] == "cold" and named.id == "named"
    other = await backend.create(spec(settings, "other", "serve"), names_id=False)
    assert other.details["start"] == "cold" and other.id == "other"
    bigger = await backend.create(spec(settings, "bigger", "echo", resources={"memory_limit": "256Mi"}), names_id=False)
    assert bigger.details["start"] == "cold"
    assert backend.last_decision is not None and "no pool" in backend.last_decision.why
    assert len(ready_members(backend)) == 1


async def test_twenty_creates_at_once_take_five_members_once_each(pooled, settings):
    settings.agents.max_concurrent_creates = 20
    backend = await pooled([{"name": "serve", "size": 5, "agent": "serve"}])
    await wait_until(lambda: len(ready_members(backend)) == 5, timeout=90, what="the pool to fill")
    members = set(ready_members(backend))
    states = await asyncio.gather(*(backend.create(spec(settings, f"c{i}", "serve", session=f"s{i}"), names_id=False)
                                    for i in range(20)))
    warm = [s for s in states if s.details["start"] == WARM]
    assert len(warm) == 5 and {s.id for s in warm} == members
    assert len({s.id for s in states}) == 20
    for state in states:
        await wait_ready(backend, state.id, session=state.session, timeout=90)
    await wait_until(lambda: len(ready_members(backend)) == 5, timeout=120, what="the pool to refill")
    assert not members & set(ready_members(backend))


async def test_pools_survive_a_restart_and_half_made_members_go(pooled, settings, tmp_path):
    backend = await pooled([{"name": "serve", "size": 2, "agent": "serve"}])
    await wait_until(lambda: len(ready_members(backend)) == 2, timeout=60, what="the pool to fill")
    before = {m.id: m.process.pid for m in backend._pools.members.values()}
    claimed = await backend.create(spec(settings, "x", "serve"), names_id=False)
    await wait_ready(backend, claimed.id)
    await wait_until(lambda: len(ready_members(backend)) == 2, timeout=60, what="the pool to refill")
    before = {m.id: m.process.pid for m in backend._pools.members.values()}
    await backend.close()

    # A member half-made by a proxy that died: a record, a work directory and a running process of its tag.
    data = Path(settings.local_mode.data_dir)
    pool_file = data / "pool.json"
    records = json.loads(pool_file.read_text())
    tag = "deadbeef" * 3
    records["members"]["halfmade1"] = {"pool": "serve", "shape": "x", "tag": tag, "created_at": "2026-01-01T00:00:00+00:00",
                                       "port": None, "bind_port": None, "process": None}
    pool_file.write_text(json.dumps(records))
    half = data / "work" / "halfmade1"
    half.mkdir(parents=True)
    import subprocess
    import sys
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=half,
                             env={**os.environ, "AGENTPROXY_PROCESS_TAG": tag}, start_new_session=True)
    try:
        again = await start(settings)
        try:
            await wait_until(lambda: not half.exists(), timeout=30, what="the half-made member removed")
            assert stray.wait(timeout=30) is not None
            assert {m.id: m.process.pid for m in again._pools.members.values() if m.state == READY} == before
            state = await wait_ready(again, claimed.id)
            assert state.details["start"] == WARM and state.status is AgentStatus.READY  # kept in the state file
            assert state.details["adopted"]
        finally:
            await drain(again)
            await again.delete(claimed.session, claimed.id)
            await again.close()
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


async def test_through_the_api_members_are_claimed_unlisted_and_counted_in_metrics(pooled, settings):
    from aiohttp.test_utils import TestClient, TestServer

    from agentproxy.api import create_app

    settings.agents.max_per_session = 1
    backend = await pooled([{"name": "serve", "size": 2, "agent": "serve"}])
    await wait_until(lambda: len(ready_members(backend)) == 2, timeout=60, what="the pool to fill")
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await (await client.get("/agents")).json())["agents"] == []
        metrics = await (await client.get("/metrics")).text()
        assert 'agentproxy_pool_members{pool="serve",state="ready"} 2.0' in metrics
        members = ready_members(backend)
        warm = await client.post("/sessions/s1/agents", json={"agent": "serve"})
        assert warm.status == 201, await warm.text()
        body = await warm.json()
        assert body["details"]["start"] == "warm" and body["id"] in members and body["session"] == "s1"
        # The session's limit counts the claimed agent, never the members; a member taken for a
        # create refused by it is given back.
        remaining = set(ready_members(backend))
        assert remaining
        full = await client.post("/sessions/s1/agents", json={"agent": "serve"})
        assert full.status == 429, await full.text()
        assert remaining <= set(ready_members(backend))
        cold = await client.post("/sessions/s2/agents", json={"id": "named", "agent": "serve"})
        assert (await cold.json())["details"]["start"] == "cold"
        listed = (await (await client.get("/agents")).json())["agents"]
        assert sorted(a["id"] for a in listed) == sorted([body["id"], "named"])
        await wait_until(lambda: len(ready_members(backend)) == 2, timeout=60, what="the pool to refill")
        assert body["id"] not in ready_members(backend)
    finally:
        await client.close()


async def test_a_member_that_ends_is_replaced(pooled, settings):
    backend = await pooled([{"name": "serve", "size": 1, "agent": "serve"}])
    await wait_until(lambda: len(ready_members(backend)) == 1, timeout=60, what="the pool to fill")
    [first] = ready_members(backend)
    member = backend._pools.members[first]
    os.kill(member.process.pid, 9)
    await wait_until(lambda: ready_members(backend) not in ([], [first]), timeout=60, what="a new member")
    await wait_until(lambda: not (Path(settings.local_mode.data_dir) / "work" / first).exists(), timeout=30,
                     what="the ended member's work directory removed")


async def test_a_changed_pool_replaces_its_members_and_a_removed_one_drains(pooled, settings, tmp_path):
    backend = await pooled([{"name": "serve", "size": 2, "agent": "serve"}])
    await wait_until(lambda: len(ready_members(backend)) == 2, timeout=60, what="the pool to fill")
    old = set(ready_members(backend))
    await backend.close()

    changed = await pooled([{"name": "serve", "size": 1, "agent": "serve", "resources": {"cpu_limit": "300m"}}])
    await wait_until(lambda: len(ready_members(changed)) == 1 and not old & set(ready_members(changed))
                     and not changed._pools._leaving, timeout=60, what="the members replaced")
    assert not any((Path(settings.local_mode.data_dir) / "work" / member).exists() for member in old)
    # A create of the old shape is cold now; of the new one, warm.
    assert (await changed.create(spec(settings, "x", "serve"), names_id=False)).details["start"] == "cold"
    new = await changed.create(spec(settings, "y", "serve", session="s2", resources={"cpu_limit": "300m"}),
                               names_id=False)
    assert new.details["start"] == WARM
    await wait_until(lambda: len(ready_members(changed)) == 1, timeout=60, what="the pool to refill")
    left = set(ready_members(changed))
    await changed.close()

    drained = await pooled([])
    await wait_until(lambda: drained._pools is not None and drained._pools.empty, timeout=60, what="the pool drained")
    assert not any((Path(settings.local_mode.data_dir) / "work" / member).exists() for member in left)
    assert json.loads((Path(settings.local_mode.data_dir) / "pool.json").read_text())["members"] == {}


async def test_a_prestarted_pool_hands_its_running_agent_the_first_message(pooled, settings):
    """``prestart``: the member's agent runs before its claim, so the claim's first message goes
    to a program that is ready; turning it on replaces the members that were made without it."""
    backend = await pooled([{"name": "echo", "size": 1, "agent": "echo"}])
    await wait_until(lambda: len(ready_members(backend)) == 1, timeout=60, what="the pool to fill")
    plain = set(ready_members(backend))
    await backend.close()

    backend = await pooled([{"name": "echo", "size": 1, "agent": "echo", "prestart": True}])
    await wait_until(lambda: len(ready_members(backend)) == 1 and not plain & set(ready_members(backend))
                     and not backend._pools._leaving, timeout=60, what="the members replaced by pre-started ones")
    [member_id] = ready_members(backend)
    member = backend._pools.members[member_id]
    agentapi = f"http://127.0.0.1:{member.port}"
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{agentapi}/status", headers={"Host": "localhost"}) as response:
            assert (await response.json())["status"] == "stable"  # running, before any claim

        state = await backend.create(spec(settings, "ignored", "echo", message="hello prestarted"), names_id=False)
        assert state.details["start"] == WARM and state.id == member_id
        state = await wait_ready(backend, state.id)
        assert state.details["pid"] == member.process.pid
        await agent_said(client, agentapi, "echo: hello prestarted")
        async with client.get(f"{agentapi}/messages", headers={"Host": "localhost"}) as response:
            said = [m["content"].strip() for m in (await response.json())["messages"] if m["role"] == "user"]
        assert said == ["hello prestarted"]
