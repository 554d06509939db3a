"""The cyclic garbage collector while a process loads what it keeps: paused, then what it
loaded frozen out of its sight.

A k8s backend's start parses the lists of every agent's objects (10,000 agents: millions of
dicts and lists) and derives every agent's state. Each container allocated counts towards the
collector's next run, and its full collections, which come each time the heap has grown by a
quarter, traverse every object the process holds: on a start they took three quarters of its
CPU (with 2,000 and 5,000 agents of the read path's benchmark). Parsed JSON holds no reference cycles (reference counting
frees whatever is dropped), and what a start loads is kept for as long as the process serves,
so the collector is paused while it loads, collects once when it is done, and what it kept is
then frozen (:func:`gc.freeze`): later collections no longer traverse it, as ``agentproxy
serve`` freezes what start-up made.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["loading"]


@contextmanager
def loading() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, then collect once, freeze every object
    the process holds and resume it. A collector already paused (by the caller, or a test) is left as it
    is: nothing is frozen then."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # What the block made that only the collector can free goes first: few objects, but
        # the HTTP responses of a start's lists are among them (their bodies in cycles, 20 MB
        # with 1,000 agents), and a frozen cycle is never freed. One collection of what the
        # block made, instead of one each time the heap grew by a quarter.
        gc.collect()
        gc.freeze()
        gc.enable()
