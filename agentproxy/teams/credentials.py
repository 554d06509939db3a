"""Credentials per user and per group: write-only secrets an agent gets in its environment.

A credential is a name (``anthropic``) and a value, held for one owner: a user or a group.
Nothing ever reads a value back out through the API; only :func:`credential_env` does, when an
agent starts or resumes, so a changed credential applies at the next start. Local mode keeps one
JSON file per owner under ``<data dir>/credentials`` with mode 0600 (:class:`FileCredentialStore`);
k8s mode one Secret per owner (:mod:`agentproxy.backends.k8s.secrets`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..privatefile import write_private
from .config import Profile

MAX_VALUE = 16 * 1024
"""The longest credential value, in characters."""


@dataclass(frozen=True)
class Holder:
    """Whose credentials: a user or a group."""

    kind: str  # "user" or "group"
    name: str

    @property
    def file_name(self) -> str:
        """The file of this holder's credentials (names are checked: no '/' and no leading '.')."""
        return f"{self.kind}.{self.name}.json"


class FileCredentialStore:
    """Credentials in files of mode 0600 under ``root`` (created 0700), one per holder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _read(self, holder: Holder) -> dict[str, dict[str, object]]:
        try:
            data = json.loads((self.root / holder.file_name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, holder: Holder, data: Mapping[str, object]) -> None:
        write_private(self.root / holder.file_name, json.dumps(data))

    def put(self, holder: Holder, name: str, value: str) -> float:
        """Set (or replace) a credential; its update time."""
        data = self._read(holder)
        now = time.time()
        data[name] = {"value": value, "updated_at": now}
        self._write(holder, data)
        return now

    def delete(self, holder: Holder, name: str) -> bool:
        """Remove a credential; False when there was none."""
        data = self._read(holder)
        if data.pop(name, None) is None:
            return False
        self._write(holder, data)
        return True

    def names(self, holder: Holder) -> dict[str, float]:
        """Each credential's name and update time (never a value)."""
        return {name: float(entry.get("updated_at") or 0)  # type: ignore[arg-type]  # written by put
                for name, entry in self._read(holder).items() if isinstance(entry, dict)}

    def value(self, holder: Holder, name: str) -> str | None:
        """A credential's value, for an agent's environment only."""
        entry = self._read(holder).get(name)
        value = entry.get("value") if isinstance(entry, dict) else None
        return value if isinstance(value, str) else None


def holders_of(owner: str | None, groups: Iterable[str]) -> list[Holder]:
    """Whose credentials an agent of ``owner`` uses, first match wins: the owner's, then each group's."""
    holders = [Holder("user", owner)] if owner is not None else []
    return holders + [Holder("group", g) for g in groups]


def credential_env(store: FileCredentialStore, profile: Profile | None, holders: list[Holder]) -> dict[str, str]:
    """The variables ``profile`` maps from credentials, each from the first holder that has it
    (a credential nobody holds is left out: the agent starts without it)."""
    env: dict[str, str] = {}
    if profile is None:
        return env
    for variable, credential in profile.credentials.items():
        for holder in holders:
            value = store.value(holder, credential)
            if value is not None:
                env[variable] = value
                break
    return env


def agent_holders(settings: Any, owner: str | None, group: str | None,
                  profile_name: str | None) -> tuple[Profile | None, list[Holder]]:
    """The profile of an agent and whose credentials it uses, in order (see :func:`holders_of`):
    its owner, the group it is shared with, the owner's other groups."""
    from .config import teams_of
    teams = teams_of(settings)
    profile = teams.profiles.get(profile_name) if profile_name is not None else None
    if profile is None or not profile.credentials:
        return None, []
    groups = ([group] if group is not None else []) + sorted(teams.groups_of(owner) - {group})
    return profile, holders_of(owner, groups)


async def resolve_env(values_of: Callable[[Holder], Awaitable[Mapping[str, str]]], profile: Profile | None,
                      holders: list[Holder]) -> dict[str, str]:
    """:func:`credential_env` over an asynchronous store (k8s mode's Secrets): each holder's
    values read once, and only while a variable still lacks one."""
    env: dict[str, str] = {}
    if profile is None:
        return env
    wanted = dict(profile.credentials)
    for holder in holders:
        if not wanted:
            break
        values = await values_of(holder)
        for variable, credential in list(wanted.items()):
            if credential in values:
                env[variable] = values[credential]
                del wanted[variable]
    return env


class LocalCredentials:
    """:class:`FileCredentialStore` with the asynchronous methods the routes call (as k8s
    mode's Secret store has them)."""

    def __init__(self, store: FileCredentialStore) -> None:
        self.store = store

    async def put(self, holder: Holder, name: str, value: str) -> float:
        """Set (or replace) a credential; its update time."""
        return self.store.put(holder, name, value)

    async def delete(self, holder: Holder, name: str) -> bool:
        """Remove a credential; False when there was none."""
        return self.store.delete(holder, name)

    async def names(self, holder: Holder) -> dict[str, float]:
        """Each credential's name and update time."""
        return self.store.names(holder)


def local_store(settings: Any) -> FileCredentialStore:
    """The store of ``local_mode.data_dir`` (``<data dir>/credentials``)."""
    data_dir = settings.local_mode.data_dir
    return FileCredentialStore(Path(os.path.expanduser(data_dir)).absolute() / "credentials")


def agent_credential_env(settings: Any, owner: str | None, group: str | None, profile_name: str | None) -> dict[str, str]:
    """The credential variables of an agent of ``owner``, shared with ``group``, made from the
    profile ``profile_name``: what its start adds to its environment."""
    profile, holders = agent_holders(settings, owner, group, profile_name)
    return credential_env(local_store(settings), profile, holders)
