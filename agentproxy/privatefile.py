"""Files readable by their owner alone, written whole or not at all (standard library only:
the agent image's home preparation and Claude Code's hooks import it without agentproxy's
dependencies)."""

from __future__ import annotations

import os
import tempfile


def write_private(path: str | os.PathLike[str], text: str, *, dir_mode: int = 0o700) -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file beside it (mode 0600, as
    ``mkstemp`` makes it) renamed over it, so a reader sees the old file or the new one, never
    half of one. Missing directories are made with ``dir_mode``. Raises :class:`OSError`."""
    directory = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
