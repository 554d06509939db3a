"""The local backend end to end: create, readiness, idempotency, bad input, delete, events."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from agentproxy.backends.base import AgentStatus, Conflict, NotFound, Rejected, Unavailable
from agentproxy.backends.local.backend import LocalBackend

from .support import (
    OURS,
    assert_nothing_left,
    autogroup_of,
    make_settings,
    processes_in,
    shut_down,
    spec,
    thread_nices,
    wait_for,
    wait_for_log,
    wait_ready,
    wait_until,
)


async def get_status(upstream: str, host: str = "localhost") -> tuple[int, dict | str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{upstream}/status", headers={"Host": host},
                              timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:  # agentapi answers errors in plain text
                return response.status, await response.text()
            return response.status, await response.json(content_type=None)


async def test_create_becomes_ready_with_upstream_and_details(backend, settings, tmp_path):
    created = await backend.create(spec(settings, "a1"))
    # The create answers without waiting for readiness; on a loaded machine the first probe
    # may still come in before the create's own await returns.
    assert created.status in (AgentStatus.STARTING, AgentStatus.READY)
    assert created.mode == "local"
    state = await wait_ready(backend, "a1")
    port = state.details["port"]
    assert settings.local_mode.ports.start <= port <= settings.local_mode.ports.end
    assert state.upstream == f"http://127.0.0.1:{port}"
    code, body = await get_status(state.upstream)
    assert code == 200 and isinstance(body, dict)
    assert body["status"] in ("running", "stable") and body["agent_type"] == "custom"
    assert (await get_status(state.upstream, host="example.com"))[0] == 400
    leader = psutil.Process(state.details["pid"])
    state_file = tmp_path / "data" / "work" / "a1" / ".agentproxy" / "agentapi-state.json"
    assert leader.cmdline()[1:9] == ["server", "--port", str(port), "--type", "custom",
                                      "--state-file", str(state_file), "--"]
    assert os.getpgid(leader.pid) == leader.pid  # its own process group, signalled as one
    # Its own session, or, where sessions are scheduling groups, the session of the helper that
    # starts every agent (one group for all of them), never the proxy's.
    assert os.getsid(leader.pid) == (backend.starter.pid if backend.starter is not None else leader.pid)
    assert os.getsid(leader.pid) != os.getsid(0)
    if backend.starter is not None:
        # That one group runs below the proxy; the helper's own threads keep the proxy's priority.
        assert autogroup_of(leader.pid) in (None, backend.agent_nice)
        assert thread_nices(backend.starter.pid) == {OURS}
    work_dir = Path(state.details["work_dir"])
    assert work_dir == tmp_path / "data" / "work" / "a1" and leader.cwd() == str(work_dir)
    assert state.details["adopted"] is False
    assert state.restarts == 0
    # Samples arrive within a few sample intervals, and count agentapi and the agent (a sample
    # taken while agentapi was still starting the agent, at a low priority on a busy machine,
    # counts agentapi alone: the next one has both).
    state = await wait_for(backend, "a1", lambda s: s.details["rss_bytes"] and s.details["work_dir_bytes"] is not None
                           and s.details["processes"] == 2)
    assert state.details["memory_limit_bytes"] == 512 * 1024 * 1024
    assert isinstance(state.details["cpu_percent"], float)
    await wait_for_log(backend, "a1", f'msg="Starting server on port" port={port}')


async def test_stdin_is_dev_null_and_agentapi_variables_are_dropped(backend, settings, monkeypatch):
    # agentapi reads a piped stdin to its end before starting: with anything but /dev/null
    # (or a closed pipe) it would never get ready. AGENTAPI_* would reconfigure it.
    monkeypatch.setenv("AGENTAPI_PORT", "1")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    await backend.create(spec(settings, "e1", "env", env={"FROM_SPEC": "yes"}, message="hello"))
    state = await wait_ready(backend, "e1")
    leader = psutil.Process(state.details["pid"])
    assert os.readlink(f"/proc/{leader.pid}/fd/0") == "/dev/null"
    env_file = Path(state.details["work_dir"]) / "env.json"
    await wait_until(env_file.exists, what="env.json")
    env = json.loads(env_file.read_text())
    assert "AGENTAPI_PORT" not in env
    assert env["UNRELATED_SETTING"] == "kept" and env["FROM_SPEC"] == "yes"
    assert env["AGENTPROXY_AGENT_ID"] == "e1" and env["AGENTPROXY_SESSION"] == "s1"
    assert env["AGENTAPI_INITIAL_PROMPT"] == "hello"  # the one AGENTAPI_ variable agentproxy sets itself


async def test_python3_resolves_to_the_proxys_own_environment(backend, settings):
    state = await wait_ready(backend, (await backend.create(spec(settings, "p1"))).id)
    agent = psutil.Process(state.details["pid"]).children()[0]
    assert os.path.dirname(agent.cmdline()[0]) == os.path.dirname(sys.executable)


async def test_create_is_idempotent_and_conflicts_on_a_different_spec(backend, settings):
    first = await backend.create(spec(settings, "a1"))
    await wait_ready(backend, "a1")
    again = await backend.create(spec(settings, "a1"))
    assert again.status is AgentStatus.READY and again.details["pid"] == first.details["pid"]
    with pytest.raises(Conflict) as info:
        await backend.create(spec(settings, "a1", env={"X": "1"}))
    assert info.value.field == "id" and info.value.http_status == 409
    with pytest.raises(Conflict, match="another session"):
        await backend.create(spec(settings, "a1", session="s2"))
    assert len(await backend.list()) == 1


async def test_agents_belong_to_their_session(backend, settings):
    await backend.create(spec(settings, "a1"))
    await backend.create(spec(settings, "b1", session="s2"))
    with pytest.raises(NotFound):
        await backend.get("s2", "a1")
    with pytest.raises(NotFound):
        await backend.logs("s2", "a1")
    with pytest.raises(NotFound):
        await backend.delete("s2", "a1")
    assert [s.id for s in await backend.list(session="s1")] == ["a1"]
    assert [s.id for s in await backend.list()] == ["a1", "b1"]
    await wait_ready(backend, "a1")
    await wait_ready(backend, "b1", session="s2")
    assert [s.id for s in await backend.list(status=AgentStatus.READY)] == ["a1", "b1"]


async def test_missing_command_is_rejected_and_disturbs_nothing(backend, settings):
    await backend.create(spec(settings, "a1"))
    before = await wait_ready(backend, "a1")
    with pytest.raises(Rejected) as info:
        await backend.create(spec(settings, "m1", "missing"))
    assert info.value.field == "agent" and info.value.http_status == 422
    assert "no-such-program-anywhere" in info.value.message and "agents.commands.missing" in info.value.message
    assert "\n" not in info.value.message
    with pytest.raises(NotFound):
        await backend.get("s1", "m1")
    after = await backend.get("s1", "a1")
    assert after.status is AgentStatus.READY and after.details["pid"] == before.details["pid"]
    assert backend.ports.assigned == {before.details["port"]: "a1"}


async def test_missing_agentapi_is_unavailable_with_install_hint(settings, tmp_path):
    settings.local_mode.agentapi_binary = str(tmp_path / "nowhere" / "agentapi")
    backend = LocalBackend(settings)
    await backend.start()
    try:
        assert await backend.healthy() is False
        with pytest.raises(Unavailable) as info:
            await backend.create(spec(settings, "a1"))
        message = info.value.message
        assert info.value.http_status == 503 and "\n" not in message
        assert "local_mode.agentapi_binary" in message and "agentproxy install-agentapi" in message
        assert await backend.list() == [] and backend.ports.assigned == {}
    finally:
        await backend.close()


async def test_healthy_when_agentapi_is_found(backend):
    assert await backend.healthy() is True


async def test_full_port_range_is_unavailable(tmp_path, launcher, ports):
    start = ports[0]
    settings = make_settings(tmp_path / "data", launcher, (start, start + 1))
    backend = LocalBackend(settings)
    await backend.start()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover must not matter
    try:
        squatter.bind(("127.0.0.1", start + 1))  # something else holds the second port
        squatter.listen()
        await backend.create(spec(settings, "a1"))
        assert (await backend.get("s1", "a1")).details["port"] == start
        with pytest.raises(Unavailable) as info:
            await backend.create(spec(settings, "a2"))
        assert info.value.http_status == 503
        assert f"no free port in local_mode.ports {start}-{start + 1}" in info.value.message
        assert "1 assigned to agents, 1 in use by other programs" in info.value.message
        with pytest.raises(NotFound):
            await backend.get("s1", "a2")
    finally:
        squatter.close()
        await shut_down(backend)
    await assert_nothing_left(tmp_path)


async def test_delete_stops_everything_and_keeps_or_purges_the_work_dir(backend, settings, tmp_path):
    for agent_id in ("k1", "p1"):
        await backend.create(spec(settings, agent_id, "write"))
    for agent_id in ("k1", "p1"):
        state = await wait_ready(backend, agent_id)
        await wait_until(lambda: (Path(state.details["work_dir"]) / "data.bin").exists(),  # noqa: B023 - awaited here
                         what="data.bin")
    kept = await backend.delete("s1", "k1")
    assert kept.status is AgentStatus.STOPPED and kept.reason == "Deleted" and kept.message == "work directory kept"
    assert (tmp_path / "data" / "work" / "k1" / "data.bin").exists()
    assert not (tmp_path / "data" / "logs" / "k1.log").exists()
    purged = await backend.delete("s1", "p1", purge=True)
    assert purged.message == "work directory deleted"
    assert not (tmp_path / "data" / "work" / "p1").exists()
    await assert_nothing_left(tmp_path)
    assert backend.ports.assigned == {}
    with pytest.raises(NotFound):
        await backend.delete("s1", "k1")
    # The id can be used again; the kept work directory is the new agent's.
    await backend.create(spec(settings, "k1"))
    assert (await wait_ready(backend, "k1")).details["work_dir"] == str(tmp_path / "data" / "work" / "k1")


async def test_events_tell_the_story(backend, settings):
    seen: list[tuple[str, str, str | None]] = []

    async def collect() -> None:
        async for event in backend.events():
            seen.append((event.type, event.agent.status.value, event.agent.reason))
            if event.type == "deleted":
                return

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)  # subscribed before the first event
    await backend.create(spec(settings, "a1"))
    await wait_ready(backend, "a1")
    await backend.delete("s1", "a1")
    await asyncio.wait_for(collector, 5)
    assert seen[0] == ("added", "starting", "Starting")
    assert ("modified", "ready", None) in seen
    assert seen[-2:] == [("modified", "stopped", "Deleted"), ("deleted", "stopped", "Deleted")]


async def test_work_dir_size_and_logs_tail(backend, settings):
    await backend.create(spec(settings, "w1", "write"))
    state = await wait_for(backend, "w1", lambda s: (s.details["work_dir_bytes"] or 0) >= 300000)
    assert state.details["work_dir_bytes"] == 300000
    tail = await backend.logs("s1", "w1", tail_lines=1)
    assert tail.count("\n") == 1


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.01, 0.03])
async def test_a_cancelled_create_leaves_a_supervised_agent_or_nothing(backend, settings, tmp_path, delay):
    creating = asyncio.create_task(backend.create(spec(settings, "c1")))
    await asyncio.sleep(delay)
    creating.cancel()
    await asyncio.gather(creating, return_exceptions=True)
    try:
        await backend.get("s1", "c1")
    except NotFound:
        await assert_nothing_left(tmp_path)  # called off in time: nothing may run
        assert backend.ports.assigned == {}
    else:
        await wait_ready(backend, "c1")  # created: it is supervised like any other


async def test_twenty_agents_at_once(backend, settings, tmp_path):
    ids = [f"n{i}" for i in range(20)]
    await asyncio.gather(*(backend.create(spec(settings, agent_id)) for agent_id in ids))
    states = await asyncio.gather(*(wait_ready(backend, agent_id, timeout=40) for agent_id in ids))
    ports = {s.details["port"] for s in states}
    assert len(ports) == 20
    assert len(processes_in(tmp_path)) == 40
    await asyncio.gather(*(backend.delete("s1", agent_id) for agent_id in ids))
    await assert_nothing_left(tmp_path)
    assert backend.ports.assigned == {}
