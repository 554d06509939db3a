"""The cyclic garbage collector while a process loads what it keeps: paused, then what it
loaded frozen out of its sight; and glibc's allocator, made to give back the large blocks a
proxy frees.

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

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["loading", "return_large_blocks", "trim"]

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BLOCK = 128 * 1024
"""Bytes from which glibc's malloc maps a block of its own, returned to the system when freed."""


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): its allocator is left as it is
        return None


def return_large_blocks() -> bool:
    """Have glibc's malloc map every block of :data:`LARGE_BLOCK` bytes or more on its own, for
    good; False where the C library is not glibc.

    glibc starts at that threshold but raises it, up to 32 MiB, each time such a block is freed,
    so that the next ones come from its heap. A proxy's large blocks are transient (pages of a
    list, the bodies of list answers, a burst of creates), and what they leave in the heap
    stays with the process: with 10,000 agents a start left 457 MB of RSS where its objects held
    232, and 285 with the threshold fixed (the mapping of a block costs about what the
    filling of its pages does)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK) == 1)


def trim() -> None:
    """Return the free memory of glibc's heap to the system (nothing elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


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
        trim()  # what the load freed
