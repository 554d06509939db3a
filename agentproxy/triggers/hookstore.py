"""Where hooks defined through the API are kept in local mode: two files of the data directory,
written atomically under a lock, so that a proxy started again (or another one sharing the
directory) has them.

- ``<data dir>/triggers/hooks.json``: each hook's stored definition (secret-free, see
  :mod:`.defined`);
- ``<data dir>/triggers/hook-secrets.json``: the secret values, mode 0600.

A change reads both, changes one hook and writes them back under an exclusive ``flock`` of
``hooks.lock``; the secret is written before the definition that names it and removed after
it, so a reader never finds a definition whose secret is missing. k8s mode keeps the same in a
ConfigMap and a Secret: :mod:`agentproxy.backends.k8s.hookstore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..privatefile import write_private


class HookStore(Protocol):
    """Where defined hooks are kept (local files, or cluster objects in k8s mode)."""

    async def read(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every stored definition by id, and the secret values by id."""

    async def put(self, hook_id: str, stored: dict[str, Any], secret: str | None) -> None:
        """Create or replace one hook (with ``secret``, its value; else any value kept is removed)."""

    async def delete(self, hook_id: str) -> bool:
        """Remove one hook and its secret; False when there was none."""


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: as if empty (the next write replaces it)
    return data if isinstance(data, dict) else {}


class LocalHookStore:
    """The defined hooks in files under ``root`` (see the module's text)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.definitions = self.root / "hooks.json"
        self.secrets = self.root / "hook-secrets.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / "hooks.lock", "a+", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        definitions = {k: v for k, v in _load(self.definitions).items() if isinstance(v, dict)}
        secrets = {k: v for k, v in _load(self.secrets).items() if isinstance(v, str)}
        return definitions, secrets

    async def read(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every stored definition and secret value (files replaced whole: no lock needed)."""
        return await asyncio.to_thread(self._read)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        write_private(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def _put(self, hook_id: str, stored: dict[str, Any], secret: str | None) -> None:
        with self._locked():
            definitions, secrets = self._read()
            if secret is not None:
                self._write(self.secrets, {**secrets, hook_id: secret})
            self._write(self.definitions, {**definitions, hook_id: stored})
            if secret is None and hook_id in secrets:
                secrets.pop(hook_id)
                self._write(self.secrets, secrets)

    async def put(self, hook_id: str, stored: dict[str, Any], secret: str | None) -> None:
        """Create or replace one hook."""
        await asyncio.to_thread(self._put, hook_id, stored, secret)

    def _delete(self, hook_id: str) -> bool:
        if not self.definitions.exists() and not self.secrets.exists():
            return False  # nothing was ever defined: no lock file made for nothing
        with self._locked():
            definitions, secrets = self._read()
            found = definitions.pop(hook_id, None) is not None
            if found:
                self._write(self.definitions, definitions)
            if secrets.pop(hook_id, None) is not None:
                self._write(self.secrets, secrets)
            return found

    async def delete(self, hook_id: str) -> bool:
        """Remove one hook and its secret."""
        return await asyncio.to_thread(self._delete, hook_id)
