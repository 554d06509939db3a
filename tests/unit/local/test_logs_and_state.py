"""The capped agent log and the atomic state file."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from agentproxy.backends.base import Unavailable
from agentproxy.backends.local.logs import AgentLog
from agentproxy.backends.local.state import DataDirLock, StateFile, StateWriter


def lines(n: int, prefix: str = "line") -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(n))


def test_rotation_keeps_the_cap_and_the_number_of_backups(tmp_path):
    log = AgentLog(tmp_path / "a.log", max_bytes=500, backups=2)
    # The writer holds its descriptor across rotations, as agentapi does.
    fd = os.open(log.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for round_ in range(4):
            os.write(fd, lines(100, f"r{round_}"))
            assert log.rotate_if_needed()
            assert log.path.stat().st_size == 0
        os.write(fd, b"after\n")
        assert not log.rotate_if_needed()
    finally:
        os.close(fd)
    # Appending after the truncation starts at the beginning again (no hole of NULs).
    assert log.path.read_bytes() == b"after\n"
    assert b"r3 99" in (tmp_path / "a.log.1").read_bytes()
    assert b"r2 99" in (tmp_path / "a.log.2").read_bytes()
    assert not (tmp_path / "a.log.3").exists()


def test_tail_reads_across_backups(tmp_path):
    log = AgentLog(tmp_path / "a.log", max_bytes=100, backups=2)
    (tmp_path / "a.log.2").write_bytes(lines(3, "oldest"))
    (tmp_path / "a.log.1").write_bytes(lines(3, "older"))
    log.path.write_bytes(lines(2, "new"))
    assert log.tail(4) == "older 1\nolder 2\nnew 0\nnew 1\n"
    assert log.tail(100).splitlines()[0] == "oldest 0"
    assert log.tail(0) == ""
    assert AgentLog(tmp_path / "none.log").tail(5) == ""


def test_tail_drops_a_line_cut_by_the_byte_budget(tmp_path):
    log = AgentLog(tmp_path / "a.log")
    log.path.write_bytes(b"x" * 50 + b"\nshort\n")
    assert log.tail(10, max_bytes=10) == "short\n"


def test_notes_and_remove(tmp_path):
    log = AgentLog(tmp_path / "logs" / "a.log")
    log.note("starting")
    assert log.path.read_text().endswith(" agentproxy: starting\n")
    (tmp_path / "logs" / "a.log.1").write_text("old\n")
    log.remove()
    assert list((tmp_path / "logs").iterdir()) == []


def test_state_file_round_trip_is_atomic(tmp_path):
    state = StateFile(tmp_path / "state.json")
    assert state.load() == {}
    state.write({"a1": {"port": 9000}})
    assert state.load() == {"a1": {"port": 9000}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary file left
    assert json.loads((tmp_path / "state.json").read_text())["version"] == 1


@pytest.mark.parametrize("content", ["{", "[]", '{"version": 99, "agents": {}}', '{"version": 1}'])
def test_an_unreadable_state_file_is_moved_aside(tmp_path, content):
    (tmp_path / "state.json").write_text(content)
    assert StateFile(tmp_path / "state.json").load() == {}
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].startswith("state.json.corrupt-")


async def test_concurrent_saves_share_writes(tmp_path):
    state = StateFile(tmp_path / "state.json")
    writes = []
    original = state.write

    def counting(records):
        writes.append(dict(records))
        original(records)

    state.write = counting  # type: ignore[method-assign]  # counts the writes
    records = {"n": 0}
    writer = StateWriter(state, lambda: {"x": dict(records)})

    async def bump_and_save():
        records["n"] += 1
        await writer.save()

    await asyncio.gather(*(bump_and_save() for _ in range(50)))
    assert 1 <= len(writes) <= 3
    assert writes[-1] == {"x": {"n": 50}}  # the last write saw every change
    assert state.load() == {"x": {"n": 50}}


def test_the_data_dir_lock_is_exclusive(tmp_path):
    first, second = DataDirLock(tmp_path / "lock"), DataDirLock(tmp_path / "lock")
    first.acquire()
    with pytest.raises(Unavailable, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
