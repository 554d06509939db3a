"""Agents' JSON as bytes, made again only for an agent whose state changed.

Both backends hand out the same :class:`~agentproxy.backends.base.AgentState`
object for as long as an agent does not change (k8s mode keeps its states in an
index, local mode's supervisors keep the last state they made until one of its
inputs changes), so each agent's JSON is serialised once per change, and a list
is the join of those bytes. A state that is a new object is simply serialised
again: correctness never depends on the cache.

A list of every agent is kept in parts (:data:`SEGMENT` agents' texts joined): one where
some agents changed takes the texts of the others from the last such list by position and
joins again only the parts that hold a changed agent, so a list of 10,000 with a few changes
costs a pass over the states, not 10,000 look-ups nor a join of megabytes. The route writes
the parts one after the other: no buffer of the whole body is made, which matters because a
buffer of megabytes is a mapping of its own whose pages are faulted in anew on every list (see
:mod:`agentproxy.heap`; it cost more than the rest of a list).

The cache refers to the states it was made of weakly: a strong reference kept every agent's
previous state alive as long as the agent was not listed again (2 KiB an agent that changed,
20 MB with 10,000). A state that is gone cannot be the one asked about, so its entry is stale.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from operator import is_not

from ..backends.base import AgentState
from .model import agent_json

_referent = weakref.ref.__call__
"""A weak reference's object (None once it is gone), as a function ``map`` can call."""
MAX_ENTRIES = 20_000
"""Entries kept at most; beyond, the cache starts afresh (agents deleted meanwhile go too)."""


@dataclass
class _LastList:
    """The last list of every agent: its states (weakly) and their texts, by position, and its parts."""

    refs: list[weakref.ref[AgentState]]
    texts: list[bytes]
    parts: list[bytes]


class AgentTexts:
    """Each agent's JSON text by agent id, valid while its state is the very object it was made of."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[str, tuple[weakref.ref[AgentState], bytes]] = {}
        self.max_entries = max_entries
        self._complete: _LastList | None = None
        """The last list of every agent: the same states in the same order (no agent changed)
        make the same parts, and a state at the same position the same text."""

    def __len__(self) -> int:
        return len(self._entries)

    def text(self, state: AgentState) -> bytes:
        """``agent_json(state)`` serialised as ``json.dumps`` does."""
        entry = self._entries.get(state.id)
        if entry is not None and entry[0]() is state:
            return entry[1]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        text = json.dumps(agent_json(state)).encode()
        self._entries[state.id] = (weakref.ref(state), text)
        return text

    def list_body(self, states: Iterable[AgentState], *, complete: bool = False) -> bytes:
        """``{"agents": [...]}`` as ``json.dumps`` writes it; ``complete`` when ``states`` are
        every agent there is (then the entries of agents not among them are dropped)."""
        return b"".join(self.list_parts(states, complete=complete))

    def list_parts(self, states: Iterable[AgentState], *, complete: bool = False) -> list[bytes]:
        """:meth:`list_body` in parts, whose join is the body (a new list, the caller's)."""
        states = states if isinstance(states, list) else list(states)
        if complete:
            return list(self._complete_parts(states))
        return _parts([self.text(s) for s in states])

    def _complete_parts(self, states: list[AgentState]) -> list[bytes]:
        last = self._complete
        if last is not None and len(last.refs) == len(states):
            refs, texts = last.refs, last.texts
            # Positions whose state is not the one listed there last time, compared in C: a
            # loop in Python over 10,000 states was most of a list's cost.
            changed = list(compress(range(len(states)), map(is_not, map(_referent, refs), states)))
            for i in changed:  # an agent that changed (or, after a create and a delete, moved)
                refs[i], texts[i] = weakref.ref(states[i]), self.text(states[i])
            for segment in sorted({i // SEGMENT for i in changed}):
                last.parts[segment] = _segment(texts, segment)
            return last.parts
        texts = [self.text(s) for s in states]
        self._complete = _LastList(list(map(weakref.ref, states)), texts, _parts(texts))
        if len(self._entries) > len(states):
            listed = {s.id for s in states}
            self._entries = {k: v for k, v in self._entries.items() if k in listed}
        return self._complete.parts


SEGMENT = 64
"""Agents' texts in one part of a list (about 50 KB: below the size from which a buffer is a
mapping of its own, see :data:`agentproxy.heap.LARGE_BLOCK`)."""
_OPEN, _SEPARATOR, _CLOSE = b'{"agents": [', b", ", b"]}"


def _parts(texts: list[bytes]) -> list[bytes]:
    """The parts of a list of ``texts``: part k holds texts k * SEGMENT onwards, with the list's
    opening in the first and its closing in the last."""
    if not texts:
        return [_OPEN + _CLOSE]
    return [_segment(texts, k) for k in range(-(-len(texts) // SEGMENT))]


def _segment(texts: list[bytes], k: int) -> bytes:
    start = k * SEGMENT
    joined = _SEPARATOR.join(texts[start:start + SEGMENT])
    head = _OPEN if k == 0 else _SEPARATOR
    return head + joined + _CLOSE if start + SEGMENT >= len(texts) else head + joined
