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
