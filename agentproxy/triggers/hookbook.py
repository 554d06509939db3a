"""Every hook a proxy knows: those of the settings, and those defined through the API, which a
:class:`~.hookstore.HookStore` keeps for every replica.

Replicas do not watch the store; they read it again (:meth:`HookBook.find`):

- on a miss: a delivery, or a ``GET``, for an id this replica does not know waits for a read of
  the store that *began after* it arrived, so a hook defined through another replica before the
  request is found at once. Misses arriving together share one read (at most one read is in
  flight per replica, however many unknown ids are posted);
- when the copy is older than :data:`MAX_AGE` seconds: a hook replaced or deleted through
  another replica is seen within that time (a listing always reads first).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .config import MAX_PROMPT, Hook, SecretMissing, secret_of
from .defined import STORED, Definition, DefinitionError, check_definition, hook_of_stored
from .hookstore import HookStore

log = logging.getLogger("agentproxy.triggers")

MAX_AGE = 5.0
"""Seconds a replica uses its copy of the defined hooks before it reads the store again."""


class SettingsHook(LookupError):
    """The hook is defined in the settings: the API neither replaces nor deletes it."""


class HookBook:
    """The hooks of the settings and of the store (see the module's text)."""

    def __init__(self, fixed: Mapping[str, Hook], store: HookStore, agent_types: Any = None,
                 prompt_max: int = MAX_PROMPT, clock: Callable[[], float] = time.monotonic,
                 max_age: float = MAX_AGE) -> None:
        self.fixed = dict(fixed)
        self.store = store
        self.agent_types = agent_types
        self.prompt_max = prompt_max
        self.clock = clock
        self.max_age = max_age
        self._defined: dict[str, Hook] = {}
        self._secrets: dict[str, bytes] = {}
        self._parsed: dict[tuple[str, str], Hook] = {}
        self._read_began = float("-inf")
        """When the latest read that finished began (the age of the copy)."""
        self._started = 0
        """Reads begun so far; each read's number is its rank."""
        self._done = 0
        """The number of the latest read that finished."""
        self._reading: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        began = self.clock()
        self._started += 1
        number = self._started
        try:
            definitions, secrets = await self.store.read()
        finally:
            self._reading = None
        defined: dict[str, Hook] = {}
        parsed: dict[tuple[str, str], Hook] = {}
        for hook_id, stored in definitions.items():
            if hook_id in self.fixed:
                continue  # the settings' hook wins (it was defined there after it was stored)
            key = (hook_id, json.dumps(stored, sort_keys=True))
            hook = self._parsed.get(key)  # templates compiled once per definition, not per read
            if hook is None:
                try:
                    hook = hook_of_stored(hook_id, stored, self.agent_types, self.prompt_max)
                except DefinitionError as exc:
                    log.warning("hook %s defined through the API is not served: %s", hook_id, exc)
                    continue
            parsed[key] = hook
            defined[hook_id] = hook
        self._parsed = parsed
        self._defined = defined
        self._secrets = {k: v.encode("utf-8") for k, v in secrets.items()}
        self._read_began = max(self._read_began, began)
        self._done = max(self._done, number)

    async def refresh(self) -> None:
        """Return once a read of the store that began after this call is done: the next read
        (the one in flight, if any, began before; it is awaited, then one more is made or joined)."""
        since = self._started
        for _ in range(3):  # the read in flight, then the one that begins after this call
            if self._done > since:
                return
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            await asyncio.shield(self._reading)

    async def find(self, hook_id: str) -> Hook | None:
        """The hook ``hook_id`` (read again on a miss or when the copy is old), or None."""
        hook = self.fixed.get(hook_id)
        if hook is not None:
            return hook
        now = self.clock()
        hook = self._defined.get(hook_id)
        if hook is None or now - self._read_began > self.max_age:
            await self.refresh()
            hook = self._defined.get(hook_id)
        return hook

    def source(self, hook_id: str) -> str:
        """``settings`` or ``api``: where the hook is defined."""
        return "settings" if hook_id in self.fixed else "api"

    def secret(self, hook: Hook) -> bytes:
        """The hook's secret, read now; :class:`SecretMissing` when it is nowhere."""
        if hook.secret.stored:
            value = self._secrets.get(hook.id)
            if not value:
                raise SecretMissing(f"the stored secret of hook {hook.id} is missing")
            return value
        return secret_of(hook.secret)

    async def all(self) -> list[Hook]:
        """Every hook, the settings' first (the store read first)."""
        await self.refresh()
        return [*self.fixed.values(), *sorted(self._defined.values(), key=lambda h: h.id)]

    def _not_settings(self, hook_id: str) -> None:
        if hook_id in self.fixed:
            raise SettingsHook(f"hook {hook_id!r} is defined in the settings (triggers.hooks.{hook_id}); change it "
                               "there, not through the API")

    async def put(self, hook_id: str, body: Any) -> tuple[Hook, bool]:
        """Create or replace hook ``hook_id`` from ``body``; the hook and whether it is new.
        :class:`DefinitionError` for a bad body, :class:`SettingsHook` for a hook of the settings;
        either way nothing is written."""
        self._not_settings(hook_id)
        await self.refresh()
        if isinstance(body, Mapping) and body.get("secret") == STORED and "secret_value" not in body:
            # Changed without giving the value again: the stored one is kept.
            kept = self._secrets.get(hook_id) if hook_id in self._defined else None
            if kept is None:
                raise DefinitionError("secret", "hook has no stored secret to keep; give secret_value")
            body = {**{k: v for k, v in body.items() if k != "secret"}, "secret_value": kept.decode("utf-8")}
        definition: Definition = check_definition(hook_id, body, self.agent_types, self.prompt_max)
        new = hook_id not in self._defined
        await self.store.put(hook_id, definition.stored, definition.secret)
        await self.refresh()
        return definition.hook, new

    async def delete(self, hook_id: str) -> bool:
        """Remove hook ``hook_id``; False when it is not defined (:class:`SettingsHook` for one of
        the settings)."""
        self._not_settings(hook_id)
        found = await self.store.delete(hook_id)
        await self.refresh()
        return found
