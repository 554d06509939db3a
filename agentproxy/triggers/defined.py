"""Hooks defined through the API (``PUT /hooks/{id}``), pure: the body checked by the rules of a
hook in settings, and the form it is stored in.

A definition has the fields of ``triggers.hooks.ID`` with one difference, the secret: a reference
(``secret_env: NAME``, or ``secret: env:NAME`` as listings show it) or a value (``secret_value``)
that the hooks' store keeps as a secret (a file of mode 0600 in local mode, a Secret in k8s mode);
a replacement may say ``secret: stored`` to keep the value stored before
(:meth:`~.hookbook.HookBook.put` puts it back in).
``secret_file`` is refused: a file on one replica's disk is not every replica's. What is stored
beside the value is secret-free: the value is replaced by the marker ``secret: stored``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import HOOK_FIELDS, ID, ID_RULE, MAX_PROMPT, RESERVED_HOOK_IDS, Hook, TriggersError, parse_hook

SECRET_VALUE_MAX = 4096
"""The longest secret value accepted, in characters."""

STORED = "stored"
"""The stored form's ``secret`` when the value is in the store's secret."""

API_FIELDS = tuple(f for f in HOOK_FIELDS if f != "secret_file") + ("secret", "secret_value")


class DefinitionError(ValueError):
    """A definition breaks a rule; ``field`` is the dotted field of the body (``match.events``)."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


@dataclass(frozen=True)
class Definition:
    """A checked definition: the hook, what is stored of it, and the secret value to store (None
    when the secret is a reference)."""

    hook: Hook
    stored: dict[str, Any]
    secret: str | None = field(default=None, repr=False)


def id_problem(hook_id: str) -> str | None:
    """Why ``hook_id`` cannot be a hook's id, or None."""
    if not ID.fullmatch(hook_id):
        return f"hook {ID_RULE}"
    if hook_id in RESERVED_HOOK_IDS:
        return f"the hook id {hook_id!r} is reserved: POST /hooks/{hook_id} is the proxy's own route"
    return None


def _relative(error: TriggersError, hook_id: str) -> DefinitionError:
    prefix = f"triggers.hooks.{hook_id}"
    path = error.path
    name = path[len(prefix) + 1:] if path.startswith(prefix + ".") else "id"
    return DefinitionError(name, error.rule)


def check_definition(hook_id: str, body: Any, agent_types: Any = None, prompt_max: int = MAX_PROMPT) -> Definition:
    """The :class:`Definition` of ``body`` for hook ``hook_id``, or :class:`DefinitionError`."""
    problem = id_problem(hook_id)
    if problem:
        raise DefinitionError("id", problem)
    if not isinstance(body, Mapping):
        raise DefinitionError("body", "must be a JSON object of hook fields")
    raw = dict(body)
    if "secret_file" in raw:
        raise DefinitionError("secret_file", "a file on one proxy's disk is not shared by replicas; give "
                                             "secret_env (or secret: env:NAME) or secret_value")
    unknown = sorted(set(raw) - set(API_FIELDS))
    if unknown:
        raise DefinitionError(unknown[0], f"is not a hook field; use {', '.join(API_FIELDS)}")
    value = raw.pop("secret_value", None)
    ref = raw.pop("secret", None)
    given = [k for k, v in (("secret_env", raw.get("secret_env")), ("secret", ref), ("secret_value", value))
             if v is not None]
    if len(given) > 1:
        raise DefinitionError(given[1], f"give one of secret_env, secret or secret_value, not {' and '.join(given)}")
    if not given:
        raise DefinitionError("secret_value", "a secret is required: secret_value (kept by the proxy as a secret), "
                                              "or secret_env (a variable of every replica's environment)")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("env:"):
            raise DefinitionError("secret", "must be env:NAME (a variable of the proxy's environment); give a "
                                            "value as secret_value")
        raw["secret_env"] = ref[len("env:"):]
    if value is not None and (not isinstance(value, str) or not value or value != value.strip()
                              or len(value) > SECRET_VALUE_MAX):
        raise DefinitionError("secret_value", f"must be 1 to {SECRET_VALUE_MAX} characters without leading or "
                                              "trailing blanks")
    try:
        hook = parse_hook(hook_id, raw, agent_types, prompt_max, stored_secret=value is not None)
    except TriggersError as exc:
        raise _relative(exc, hook_id) from None
    stored = {**raw, "secret": STORED} if value is not None else raw
    return Definition(hook, stored, value)


def hook_of_stored(hook_id: str, stored: Mapping[str, Any], agent_types: Any = None,
                   prompt_max: int = MAX_PROMPT) -> Hook:
    """The hook a stored definition describes (:class:`DefinitionError` when it no longer passes,
    e.g. its agent type was removed from the settings since)."""
    raw = dict(stored)
    secret = raw.pop("secret", None)
    try:
        return parse_hook(hook_id, raw, agent_types, prompt_max, stored_secret=secret == STORED)
    except TriggersError as exc:
        raise _relative(exc, hook_id) from None
