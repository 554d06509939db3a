"""The real node another cluster left behind: taken down by the next ``cluster up`` when nothing
of that cluster runs any more, refused (naming what runs) while something does."""

import shutil

import pytest

from testenv import host, procs, realnode
from testenv.layout import Layout


@pytest.fixture
def other(tmp_path):
    """The layout of another cluster, whose host record names it as the real node's owner."""
    return Layout(tmp_path / "cache", tmp_path / "other", 32300)


@pytest.fixture
def leftover(other, monkeypatch):
    """A host record of ``other``'s node; what ``down`` is asked to undo is recorded, not done
    (undoing it here would change this host's network and cgroups)."""
    record = {"owner": str(other.state), "node_dir": str(other.state / "node"), "bridge": host.BRIDGE}
    monkeypatch.setattr(host, "preflight", lambda: None)
    monkeypatch.setattr(host, "read_record", lambda: record)
    undone: list[tuple] = []
    monkeypatch.setattr(realnode, "down", lambda layout, rec=None: undone.append((layout.state, rec)))
    return record, undone


def test_a_node_left_behind_by_a_cluster_of_which_nothing_runs_is_taken_down(tmp_path, other, leftover, monkeypatch):
    record, undone = leftover
    # Pods of a real node that does run here (the e2e tier's) are in the cgroups every node uses.
    monkeypatch.setattr(host, "node_processes", lambda node_dir: [])
    (other.state / "run").mkdir(parents=True)
    (other.state / "run" / "kube-apiserver.pid").write_text('{"pid": 1, "create_time": 1.0, "exe": "x"}')
    mine = Layout(tmp_path / "cache", tmp_path / "mine", 32300)
    realnode.preflight(mine)
    assert undone == [(other.state, record)]


def test_a_node_of_a_cluster_that_still_runs_is_refused_naming_what_runs(tmp_path, other, leftover):
    record, undone = leftover
    sleep = shutil.which("sleep")
    assert sleep is not None
    started = procs.start(other.state, "kube-apiserver", [sleep, "60"])
    try:
        assert realnode.still_running(other, record["node_dir"]) == ["kube-apiserver"]
        with pytest.raises(SystemExit, match=r"is on this host \(kube-apiserver running\)"):
            realnode.preflight(Layout(tmp_path / "cache", tmp_path / "mine", 32300))
        assert undone == []
    finally:
        procs.stop(other.state, "kube-apiserver", grace=5)
        started.wait(timeout=5)  # a child of the test run: reaped here
    assert realnode.still_running(other, record["node_dir"]) == []


def test_the_own_record_is_no_leftover(other, leftover):
    _, undone = leftover
    realnode.preflight(other)
    assert undone == []
