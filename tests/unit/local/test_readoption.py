"""A restarted proxy finds its agents again: re-adopts those still running (never a
process that merely got the same pid), restarts those that died meanwhile."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from agentproxy.backends.base import AgentStatus, Unavailable
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import identify

from .support import assert_nothing_left, shut_down, spec, wait_for, wait_ready, wait_until

ROOT = Path(__file__).resolve().parents[3]


async def test_close_leaves_agents_running_and_the_next_backend_re_adopts_them(settings, tmp_path):
    first = LocalBackend(settings)
    await first.start()
    for agent_id in ("keep", "dies"):
        await first.create(spec(settings, agent_id))
    before = {agent_id: await wait_ready(first, agent_id) for agent_id in ("keep", "dies")}
    await first.close()
    del first
    kept = psutil.Process(before["keep"].details["pid"])
    assert kept.is_running() and kept.status() != psutil.STATUS_ZOMBIE
    # While no proxy watches, one agent dies with its whole tree.
    dying = psutil.Process(before["dies"].details["pid"])
    for proc in [dying, *dying.children(recursive=True)]:
        proc.kill()
    psutil.wait_procs([dying], timeout=5)

    second = LocalBackend(settings)
    await second.start()
    try:
        keep = await wait_ready(second, "keep")
        assert keep.details["pid"] == kept.pid and keep.details["adopted"] is True
        assert keep.restarts == 0 and keep.details["port"] == before["keep"].details["port"]
        assert keep.upstream == before["keep"].upstream
        assert keep.created_at == before["keep"].created_at
        dies = await wait_ready(second, "dies")
        assert dies.details["pid"] != dying.pid and dies.details["adopted"] is False
        assert dies.restarts == 1 and dies.details["port"] == before["dies"].details["port"]
        # Still supervised: an exit of the re-adopted agent is noticed and restarted.
        kept.kill()
        restarted = await wait_for(second, "keep", lambda s: s.restarts == 1 and s.status is AgentStatus.READY)
        assert restarted.details["pid"] != kept.pid
    finally:
        await shut_down(second)
    await assert_nothing_left(tmp_path)


async def test_agents_survive_a_killed_proxy_and_are_re_adopted(settings, tmp_path, launcher, ports):
    data_dir = settings.local_mode.data_dir
    proxy = subprocess.Popen([sys.executable, "-m", "tests.unit.local.proxy_process", data_dir, launcher,
                              str(ports[0]), str(ports[1]), "x1", "x2"],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proxy.stdout.readline()
        assert line, "the proxy process ended without reporting its agents"
        pids = json.loads(line)
    finally:
        proxy.send_signal(signal.SIGKILL)  # no close(): as if the machine's OOM killer struck
        proxy.wait(timeout=10)
        proxy.stdout.close()
    for pid in pids.values():
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    backend = LocalBackend(settings)
    await backend.start()  # the dead proxy's lock on the data_dir went with it
    try:
        for agent_id, pid in pids.items():
            state = await wait_ready(backend, agent_id)
            assert state.details["pid"] == pid and state.details["adopted"] is True and state.restarts == 0
        # Not a child of ours: watched through psutil, stopped all the same.
        await backend.delete("s1", "x1")
        assert not _running(pids["x1"])
    finally:
        await shut_down(backend)
    await assert_nothing_left(tmp_path)


@pytest.mark.parametrize("mismatch", ["cmdline", "start", "gone"])
async def test_a_recorded_pid_that_is_not_the_agent_is_never_touched(settings, tmp_path, mismatch):
    bystander = subprocess.Popen(["sleep", "60"], cwd="/")
    try:
        identity = identify(bystander.pid)
        assert identity is not None
        record_process = identity.to_dict()
        if mismatch == "cmdline":  # the pid and start time of the bystander, an agentapi command line
            record_process["cmdline"] = [settings.local_mode.agentapi_binary, "server", "--port", "1"]
        elif mismatch == "start":  # the very command line, but started at another time
            record_process["started"] -= 3600
            record_process["create_time"] -= 3600
        else:
            record_process["pid"] = 2**22 + 1  # above any pid_max: no such process
        agent_spec = spec(settings, "f1")
        state_file = Path(settings.local_mode.data_dir) / "state.json"
        state_file.parent.mkdir(parents=True)
        state_file.write_text(json.dumps({"version": 1, "agents": {"f1": {
            "spec": agent_spec.to_json(), "port": settings.local_mode.ports.start,
            "created_at": "2025-01-01T00:00:00+00:00", "restarts": 2, "tag": "feedface",
            "process": record_process, "status": "running"}}}))

        backend = LocalBackend(settings)
        await backend.start()
        try:
            state = await wait_ready(backend, "f1")
            assert state.details["pid"] != bystander.pid and state.details["adopted"] is False
            # It died while no proxy watched: one more restart, noted once. On a loaded machine a
            # run may also end before it is ready (then restarted, and noted as such): every
            # restart is accounted for.
            log = await backend.logs("s1", "f1", 500)
            assert log.count("the agent was not running when the proxy started") == 1, log
            assert state.restarts == 3 + log.count("; restarting in "), log
            await backend.delete("s1", "f1")
        finally:
            await shut_down(backend)
        assert bystander.poll() is None
        assert psutil.Process(bystander.pid).status() in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    finally:
        bystander.kill()
        bystander.wait(timeout=5)
    await assert_nothing_left(tmp_path)


async def test_an_agent_whose_port_left_the_range_moves_to_a_new_one(settings, tmp_path):
    first = LocalBackend(settings)
    await first.start()
    await first.create(spec(settings, "a1"))
    before = await wait_ready(first, "a1")
    await first.close()
    old_port, old_pid = before.details["port"], before.details["pid"]
    settings.local_mode.ports.start = old_port + 1  # the operator narrowed the range meanwhile

    second = LocalBackend(settings)
    await second.start()
    try:
        after = await wait_ready(second, "a1")
        assert after.details["port"] > old_port and after.details["pid"] != old_pid and after.restarts == 1
        assert not _running(old_pid)  # the old run was ended, not left behind on its old port
    finally:
        await shut_down(second)
    await assert_nothing_left(tmp_path)


async def test_failed_agents_stay_failed_and_bad_records_are_dropped(settings, tmp_path):
    first = LocalBackend(settings)
    await first.start()
    await first.create(spec(settings, "c1", "crash"))
    failed = await wait_for(first, "c1", lambda s: s.status is AgentStatus.FAILED)
    await first.close()
    state_file = Path(settings.local_mode.data_dir) / "state.json"
    data = json.loads(state_file.read_text())
    data["agents"]["broken"] = {"spec": "{not json"}
    state_file.write_text(json.dumps(data))

    second = LocalBackend(settings)
    await second.start()
    try:
        again = await second.get("s1", "c1")
        assert again.status is AgentStatus.FAILED and again.reason == "CrashLoopBackOff"
        assert again.message == failed.message and again.restarts == failed.restarts
        assert [s.id for s in await second.list()] == ["c1"]
        # Rewritten without it in the background, once the backend serves.
        await wait_until(lambda: "broken" not in json.loads(state_file.read_text())["agents"],
                         what="the bad record to be dropped from the state file")
    finally:
        await shut_down(second)
    await assert_nothing_left(tmp_path)


async def test_an_unreadable_state_file_is_set_aside(settings):
    data_dir = Path(settings.local_mode.data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / "state.json").write_text("{ half a file")
    backend = LocalBackend(settings)
    await backend.start()
    try:
        assert await backend.list() == []
        assert [p.name.startswith("state.json.corrupt-") for p in data_dir.iterdir()].count(True) == 1
    finally:
        await backend.close()


async def test_two_proxies_cannot_share_a_data_dir(backend, settings):
    other = LocalBackend(settings)
    with pytest.raises(Unavailable, match="in use by another agentproxy"):
        await other.start()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
