"""Agents' JSON as bytes, made again only for an agent whose state changed.

Both backends hand out the same :class:`~agentproxy.backends.base.AgentState`
object for as long as an agent does not change (k8s mode keeps its states in an
index, local mode's supervisors keep the last state they made until one of its
inputs changes), so each agent's JSON is serialised once per change, and a list
is the join of those bytes. A state that is a new object is simply serialised
again: correctness never depends on the cache. A list of every agent whose states are all
the very ones of the last such list is the last body again.

The cache refers to the states it was made of weakly: a strong reference kept every agent's
previous state alive as long as the agent was not listed again (2 KiB an agent that changed,
20 MB with 10,000). A state that is gone cannot be the one asked about, so its entry is stale.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable

from ..backends.base import AgentState
from .model import agent_json

MAX_ENTRIES = 20_000
"""Entries kept at most; beyond, the cache starts afresh (agents deleted meanwhile go too)."""


class AgentTexts:
    """Each agent's JSON text by agent id, valid while its state is the very object it was made of."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[str, tuple[weakref.ref[AgentState], bytes]] = {}
        self.max_entries = max_entries
        self._complete: tuple[list[weakref.ref[AgentState]], bytes] | None = None
        """The last list of every agent and its body: the same states in the same order (no
        agent changed) make the same body, without joining thousands of texts again."""

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
        states = list(states)
        if complete:
            last = self._complete
            if last is not None and len(last[0]) == len(states) and all(
                    ref() is state for ref, state in zip(last[0], states, strict=True)):
                return last[1]
        body = b'{"agents": [' + b", ".join([self.text(s) for s in states]) + b"]}"
        if complete:
            self._complete = (list(map(weakref.ref, states)), body)
            if len(self._entries) > len(states):
                listed = {s.id for s in states}
                self._entries = {k: v for k, v in self._entries.items() if k in listed}
        return body
