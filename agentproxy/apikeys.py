"""API keys: the one place their rules live.

A key is configured as the SHA-256 hex digest of the secret, never the secret
itself, with a name (the owner of the agents it creates) and a role. The
settings loader checks ``server.api_keys`` with :func:`parse_api_keys` and the
HTTP layer builds its key checks from the same function, so the two can never
accept different keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
FIELDS = ("name", "sha256", "admin")
"""The fields of a key record."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of an API key: what the settings hold."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: a name (the owner of the agents it creates), its digest and its role."""

    name: str
    sha256: str
    admin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("an API key needs a non-empty name")
        if not isinstance(self.sha256, str) or not _HEX_DIGEST.fullmatch(self.sha256):
            raise ValueError(f"API key {self.name!r}: sha256 must be 64 hexadecimal digits "
                             "(the SHA-256 digest of the key, e.g. `printf %s KEY | sha256sum`)")
        if not isinstance(self.admin, bool):
            raise ValueError(f"API key {self.name!r}: admin must be true or false")

    @classmethod
    def from_record(cls, record: Any) -> ApiKey:
        """A key from a settings record: a mapping or an object with ``name``, ``sha256``, ``admin``."""
        if isinstance(record, ApiKey):
            return record
        if isinstance(record, Mapping):
            unknown = set(record) - set(FIELDS)
            if unknown:
                raise ValueError(f"API key record has unknown fields: {', '.join(sorted(map(str, unknown)))}")
            return cls(record.get("name"), record.get("sha256"), record.get("admin", False))  # type: ignore[arg-type]  # __post_init__ checks
        return cls(getattr(record, "name", None), getattr(record, "sha256", None),  # type: ignore[arg-type]  # __post_init__ checks
                   getattr(record, "admin", False))

    def to_record(self) -> dict[str, Any]:
        """The settings record of this key (digest in lowercase)."""
        return {"name": self.name, "sha256": self.sha256.lower(), "admin": self.admin}


class ApiKeyError(ValueError):
    """A key record breaks a rule; ``index`` is its position in the list (None: the list as a whole)."""

    def __init__(self, rule: str, index: int | None = None) -> None:
        self.rule = rule
        self.index = index
        super().__init__(rule if index is None else f"entry {index}: {rule}")


def parse_api_keys(records: Iterable[Any]) -> tuple[ApiKey, ...]:
    """Every key of ``records``, or :class:`ApiKeyError` for the first broken rule: each record
    must be a valid key, and names must be unique."""
    keys = []
    for index, record in enumerate(records):
        try:
            keys.append(ApiKey.from_record(record))
        except ValueError as exc:
            raise ApiKeyError(str(exc), index) from None
    names = [k.name for k in keys]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ApiKeyError(f"API key names must be unique; repeated: {', '.join(repeated)}")
    return tuple(keys)
