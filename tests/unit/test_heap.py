"""The collector while a start loads: paused in the block, what was made frozen after, and a
collector the caller paused left as it was."""

from __future__ import annotations

import gc

import pytest

from agentproxy import heap


@pytest.fixture
def collector():
    """The collector enabled and nothing frozen, before and after the test."""
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable()


def test_the_collector_is_paused_while_loading_and_what_was_loaded_is_frozen(collector):
    with heap.loading():
        assert not gc.isenabled()
        loaded = [{"metadata": {"name": f"agent-{i}"}} for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(loaded)


def test_a_failed_load_resumes_the_collector(collector):
    with pytest.raises(RuntimeError), heap.loading():
        raise RuntimeError("the list failed")
    assert gc.isenabled()


def test_a_collector_paused_by_the_caller_is_left_paused_and_nothing_is_frozen(collector):
    gc.disable()
    with heap.loading():
        assert not gc.isenabled()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_cycle_made_while_loading_is_collected_not_frozen(collector):
    import weakref

    class Node:
        pass

    with heap.loading():
        node = Node()
        node.self = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
        gone = weakref.ref(node)
        del node
    assert gone() is None


_BLOCKS = """
import sys, psutil
from agentproxy import heap
if sys.argv[1] == "fixed":
    assert heap.return_large_blocks()
def rss():
    return psutil.Process().memory_info().rss
block = bytearray(1 << 20)
del block  # one large block freed: glibc raises its threshold above it
big, kept = [], []
for _ in range(200):
    big.append(bytearray(1 << 20))
    kept.append(bytearray(600))  # small and long-lived, between the large ones
before = rss()
big.clear()
print(before - rss())
"""


def test_large_blocks_freed_go_back_to_the_system():
    """With glibc's threshold fixed, 200 MiB of large blocks freed among small ones that stay
    are returned; with its own rising threshold they stay with the process."""
    import subprocess
    import sys

    if heap._libc() is None:
        pytest.skip("the C library is not glibc")  # the machines this project runs on have glibc
    returned = {how: int(subprocess.run([sys.executable, "-c", _BLOCKS, how], capture_output=True, text=True,
                                        check=True, timeout=60).stdout)
                for how in ("rising", "fixed")}
    assert returned["fixed"] > 150 * 2**20
    assert returned["rising"] < 50 * 2**20
