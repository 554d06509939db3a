"""Whether a hook acts on an event, and what a template sees of it. Pure.

An event is its type (GitHub's ``X-GitHub-Event``; for other senders the header is optional),
and its JSON payload. What the rules read of a payload follows GitHub's shape, which most
senders copy: ``action``, ``repository.full_name``, the labels of ``issue`` or
``pull_request`` (and ``label``, the one just added).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Hook


@dataclass(frozen=True)
class Event:
    """One inbound delivery: its type, its id and its payload."""

    type: str | None
    delivery: str | None
    payload: Mapping[str, Any]

    @property
    def action(self) -> str | None:
        value = self.payload.get("action")
        return value if isinstance(value, str) else None

    @property
    def repository(self) -> str | None:
        repo = self.payload.get("repository")
        name = repo.get("full_name") if isinstance(repo, Mapping) else None
        return name if isinstance(name, str) else None

    @property
    def subject(self) -> Mapping[str, Any] | None:
        """The issue or pull request the event is about, if any."""
        for key in ("pull_request", "issue"):
            value = self.payload.get(key)
            if isinstance(value, Mapping):
                return value
        return None

    @property
    def number(self) -> int | None:
        subject = self.subject
        number = subject.get("number") if subject is not None else None
        return number if isinstance(number, int) and not isinstance(number, bool) else None

    @property
    def labels(self) -> frozenset[str]:
        names = set()
        subject = self.subject
        for label in (subject.get("labels") if subject is not None else None) or []:
            if isinstance(label, Mapping) and isinstance(label.get("name"), str):
                names.add(label["name"])
        added = self.payload.get("label")
        if isinstance(added, Mapping) and isinstance(added.get("name"), str):
            names.add(added["name"])
        return frozenset(names)

    def context(self) -> dict[str, Any]:
        """What templates and expressions see: the payload's keys, and ``event``, ``action``,
        ``repository_name``, ``number``, ``labels``, ``delivery``, ``payload``."""
        return {**self.payload, "payload": self.payload, "event": self.type, "action": self.action,
                "repository_name": self.repository, "number": self.number, "labels": sorted(self.labels),
                "delivery": self.delivery}


def mismatch(hook: Hook, event: Event) -> str | None:
    """Why ``hook`` does not act on ``event`` (one sentence), or None when it does."""
    rules = hook.match
    if rules.events and event.type not in rules.events:
        return f"event {event.type!r} is not one of {', '.join(sorted(rules.events))}"
    if rules.actions and event.action not in rules.actions:
        return f"action {event.action!r} is not one of {', '.join(sorted(rules.actions))}"
    if rules.repositories and event.repository not in rules.repositories:
        return f"repository {event.repository!r} is not one of {', '.join(sorted(rules.repositories))}"
    if rules.labels and not (rules.labels & event.labels):
        return f"none of the labels {', '.join(sorted(rules.labels))} is on it"
    if rules.when is not None and not rules.when.holds(event.context()):
        return f"'{rules.when.source}' is not true of it"
    return None


def agent_id_for(hook: Hook, event: Event) -> str:
    """The id of the agent ``event`` starts: by issue or pull request when the hook reuses
    agents (every event of one issue reaches the same agent), else by delivery (a delivery
    retried after a crash makes the same agent again rather than a second one)."""
    if hook.reuse == "issue" and event.number is not None:
        key = f"{event.repository or ''}#{event.number}"
        return f"{hook.id}-{event.number}-{_short(key, 6)}"[:46].rstrip("-")
    return f"{hook.id}-{_short(event.delivery or '', 12)}"


def _short(text: str, size: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]
