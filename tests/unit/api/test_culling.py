"""The culler and the traffic clock over the in-memory backend: which agents a pass suspends,
records as active or deletes, and the clock a proxied request starts."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from agentproxy.api.culling import Culler, TrafficClock
from agentproxy.backends.base import AgentStatus, LifecycleEvent
from agentproxy.backends.suspension import IDLE, AgentActivity
from agentproxy.idle import IdlePolicy
from agentproxy.settings import Settings
from agentproxy.spec import build_spec

from .memory_backend import MemoryBackend
from .support import labels, scrape

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def make(backend: MemoryBackend, settings: Settings, agent_id: str, **changes) -> None:
    """An agent created three hours before NOW, with ``changes``."""
    await backend.create(build_spec(settings, "s1", agent_id))
    backend.agents[agent_id] = dataclasses.replace(backend.agents[agent_id], created_at=NOW - timedelta(hours=3),
                                                   **changes)


async def test_a_pass_suspends_the_idle_records_the_active_and_deletes_the_expired(settings, backend: MemoryBackend):
    told: list[LifecycleEvent] = []
    backend.lifecycle_listeners.append(told.append)
    old = NOW - timedelta(hours=2)
    await make(backend, settings, "idle", last_active=old)
    await make(backend, settings, "recent", last_active=NOW - timedelta(minutes=5))
    await make(backend, settings, "working", last_active=old)
    await make(backend, settings, "talked", last_active=old)
    await make(backend, settings, "starting", last_active=old, status=AgentStatus.STARTING)
    await make(backend, settings, "ancient", last_active=NOW)
    backend.agents["ancient"] = dataclasses.replace(backend.agents["ancient"], created_at=NOW - timedelta(days=30))
    backend.activities["working"] = AgentActivity("running", None)
    backend.activities["talked"] = AgentActivity("stable", NOW - timedelta(minutes=3))
    backend.activities["idle"] = AgentActivity("stable", NOW - timedelta(hours=3))

    culler = Culler(backend, IdlePolicy(idle_timeout=1800, max_age=7 * 86400), TrafficClock(enabled=True))
    await culler.run_once(NOW)
    status = {a: s.status for a, s in backend.agents.items()}
    assert status == {"idle": AgentStatus.SUSPENDED, "recent": AgentStatus.READY, "working": AgentStatus.READY,
                      "talked": AgentStatus.READY, "starting": AgentStatus.STARTING}
    assert backend.deleted == [("s1", "ancient", False)]  # deleted, its data kept
    assert backend.agents["working"].last_active == NOW
    assert backend.agents["talked"].last_active == NOW - timedelta(minutes=3)
    assert [(e.kind, e.cause) for e in told] == [("suspended", IDLE)]
    await culler.run_once(NOW + timedelta(minutes=1))  # a second pass finds nothing more to do
    assert [(e.kind, e.cause) for e in told] == [("suspended", IDLE)]


async def test_traffic_is_recorded_at_most_once_per_resolution(settings, backend: MemoryBackend):
    await make(backend, settings, "a1", last_active=NOW - timedelta(seconds=100))
    clock = TrafficClock(enabled=True)
    culler = Culler(backend, IdlePolicy(idle_timeout=1800), clock)  # resolution: a minute
    recorded: list = []
    record = backend._record_activity

    async def counting(state, when):
        recorded.append(when)
        await record(state, when)
    backend._record_activity = counting  # type: ignore[method-assign]  # counts the calls
    clock.touch("a1")
    clock.touch("a1")
    await culler.flush()
    assert len(recorded) == 1 and backend.agents["a1"].last_active == recorded[0]
    clock.touch("a1")  # within a minute of the recorded time: not written again
    await culler.flush()
    assert len(recorded) == 1
    assert clock.drain() == []
    off = TrafficClock(enabled=False)
    off.touch("a1")
    assert off.drain() == []


async def test_the_app_culls_an_idle_agent_and_a_request_brings_it_back(make_api, settings,
                                                                         backend: MemoryBackend):
    settings.agents.idle_timeout = 1.0  # the culler looks every half second
    api = await make_api()
    assert (await api.post("/sessions/s1/agents", json={"id": "busy"})).status == 201
    assert (await api.post("/sessions/s1/agents", json={"id": "quiet"})).status == 201
    for agent_id in ("busy", "quiet"):  # both were just active
        backend.agents[agent_id] = dataclasses.replace(backend.agents[agent_id], last_active=datetime.now(UTC))

    async def keep_busy() -> None:
        for _ in range(40):  # bounded: at most 40 requests over about 4 s
            await api.get("/sessions/s1/agents/busy/api/status")
            await asyncio.sleep(0.1)

    requests = asyncio.create_task(keep_busy())
    deadline = asyncio.get_running_loop().time() + 10
    while backend.agents["quiet"].status is not AgentStatus.SUSPENDED:
        assert asyncio.get_running_loop().time() < deadline, "the quiet agent was not culled"
        await asyncio.sleep(0.05)
    await requests
    assert backend.agents["busy"].status is AgentStatus.READY  # its requests kept it active
    response = await api.get("/sessions/s1/agents/quiet/api/status")
    assert response.status == 200  # the in-memory backend is ready at once when resumed
    samples = await scrape(api)
    assert samples[("agentproxy_agent_suspends_total", labels(cause="idle"))] >= 1
    assert samples[("agentproxy_agent_resumes_total", labels(cause="request"))] == 1


async def test_a_profile_with_an_idle_timeout_of_its_own_is_culled_by_it(settings, backend: MemoryBackend):
    # No global idle timeout: only the agents of the profile "brief" (2 minutes) are culled.
    await backend.create(dataclasses.replace(build_spec(settings, "s1", "brief"), profile="brief"))
    await backend.create(dataclasses.replace(build_spec(settings, "s1", "other"), profile="other"))
    await backend.create(build_spec(settings, "s1", "plain"))
    for agent_id in ("brief", "other", "plain"):
        backend.agents[agent_id] = dataclasses.replace(backend.agents[agent_id], created_at=NOW - timedelta(hours=3),
                                                       last_active=NOW - timedelta(minutes=20))
    culler = Culler(backend, IdlePolicy(), TrafficClock(enabled=True), profiles={"brief": IdlePolicy(120)})
    assert culler.policy.resolution == 30  # a quarter of the profile's limit
    await culler.run_once(NOW)
    assert {a: s.status for a, s in backend.agents.items()} == {
        "brief": AgentStatus.SUSPENDED, "other": AgentStatus.READY, "plain": AgentStatus.READY}
