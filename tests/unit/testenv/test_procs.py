"""The test cluster's pid files: a process is recognised as the one started by its start since
boot, whatever the wall clock did meanwhile."""

import json
import shutil

import psutil
import pytest

from testenv import procs


@pytest.fixture
def sleeper(tmp_path):
    sleep = shutil.which("sleep")
    assert sleep is not None
    started = procs.start(tmp_path, "sleeper", [sleep, "60"])
    try:
        yield tmp_path
    finally:
        procs.stop(tmp_path, "sleeper", grace=5)
        # The sleeper is a child of the test run (the cluster's processes are children of a
        # command that has ended): reaped here, and ended here too where a test made its pid
        # file name another process, which procs.stop then rightly leaves alone.
        try:
            started.kill()
            started.wait(timeout=5)
        except psutil.NoSuchProcess:
            pass


def _rewrite(state, **changes):
    path = procs.pidfile(state, "sleeper")
    record = json.loads(path.read_text())
    record.update(changes)
    for key, value in list(record.items()):
        if value is None:
            del record[key]
    path.write_text(json.dumps(record))


def test_a_process_is_still_ours_after_the_boot_time_stepped_by_a_second(sleeper):
    # /proc/stat's btime is whole seconds derived from the wall clock: when it steps, every
    # create_time psutil reports moves by a second, the start since boot does not.
    record = procs.record(sleeper, "sleeper")
    _rewrite(sleeper, create_time=record["create_time"] + 1.0)
    proc = procs.owned_process(sleeper, "sleeper")
    assert proc is not None and proc.pid == record["pid"]
    procs.stop(sleeper, "sleeper", grace=5)
    assert procs.owned_process(sleeper, "sleeper") is None
    assert not procs.pidfile(sleeper, "sleeper").exists()


def test_another_start_is_not_ours(sleeper):
    record = procs.record(sleeper, "sleeper")
    _rewrite(sleeper, since_boot=record["since_boot"] - 1.0)
    assert procs.owned_process(sleeper, "sleeper") is None


def test_a_pid_file_without_the_start_since_boot_compares_create_times(sleeper):
    record = procs.record(sleeper, "sleeper")
    _rewrite(sleeper, since_boot=None)
    assert procs.owned_process(sleeper, "sleeper") is not None
    _rewrite(sleeper, create_time=record["create_time"] - 1.0)
    assert procs.owned_process(sleeper, "sleeper") is None
