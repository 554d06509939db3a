"""Unpacking a tar archive nobody vouched for, on every Python agentproxy runs on.

``tarfile``'s ``filter="data"`` (Python 3.12, backported to 3.11.4) refuses what
a data archive has no business holding: members outside the target directory,
links that point out of it, device files and fifos; it drops setuid/setgid bits,
write bits of group and others, and the archive's owners. Debian 12's Python is
3.11.2, which has no filters and would write whatever the archive says. There,
:func:`data_members` checks the whole member list before anything is written
and hands ``extractall`` sanitised copies with the same guarantees.

The check is lexical, which is sound because it also refuses any path that
passes through a symbolic link of the archive, and the target is a new, empty
directory: nothing on disk can redirect a path that looks contained.
"""

from __future__ import annotations

import copy
import os
import posixpath
import tarfile
from collections.abc import Sequence
from pathlib import Path


class UnsafeArchive(ValueError):
    """A member the ``data`` filter would refuse; the message names it and the rule."""


def has_data_filter() -> bool:
    """Does this Python's ``tarfile`` have the ``data`` extraction filter (3.11.4+)?"""
    return hasattr(tarfile, "data_filter")


def extract_data(archive: tarfile.TarFile, into: Path) -> None:
    """Extract ``archive`` into the new, empty directory ``into`` as ``filter="data"`` would.

    Raises :class:`UnsafeArchive` (the own check refuses before anything is written; tarfile's
    filter at the member it refuses) or ``tarfile.TarError``/``OSError``.
    """
    if any(into.iterdir()):
        raise UnsafeArchive(f"{into}: the target of an extraction must be empty")
    if has_data_filter():
        try:
            archive.extractall(into, filter="data")
        except tarfile.FilterError as exc:  # a subclass of TarError; say it the same way as below
            raise UnsafeArchive(str(exc)) from None
        return
    archive.extractall(into, members=data_members(archive.getmembers()))  # checked in full first


def data_members(members: Sequence[tarfile.TarInfo], *, uid: int | None = None,
                 gid: int | None = None) -> list[tarfile.TarInfo]:
    """Copies of ``members`` fit for extracting into an empty directory, or
    :class:`UnsafeArchive` for the first one that is not.

    Refused: absolute names and names whose ``..`` leave the top, paths that pass
    through one of the archive's symbolic links, absolute link targets, symbolic
    links resolving outside the top, hard links to anything but an earlier
    regular file of the archive, and every member that is not a regular file,
    directory or link (devices, fifos). Kept: names, contents, times. Modes lose
    setuid/setgid/sticky and group/other write bits, files stay readable and
    writable by their owner; owners become ``uid``/``gid`` (the current user's
    by default), never the archive's.
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    symlinks = {_resolve(m.name, m.name, set()) for m in members if m.issym()}
    files: set[str] = set()
    out = []
    for member in members:
        name = _resolve(member.name, member.name, symlinks)
        if (member.issym() or member.islnk()) and posixpath.isabs(member.linkname):
            raise UnsafeArchive(f"{member.name}: a link to an absolute path ({member.linkname}) is refused")
        if member.issym():
            _resolve(posixpath.join(posixpath.dirname(member.name), member.linkname), member.name, symlinks,
                     outside=f"its target {member.linkname} is outside the archive's directory")
        elif member.islnk():
            target = _resolve(member.linkname, member.name, symlinks,
                              outside=f"its target {member.linkname} is outside the archive's directory")
            if target not in files:
                raise UnsafeArchive(f"{member.name}: a hard link must point to an earlier file of the "
                                    f"archive, not {member.linkname}")
        elif not (member.isreg() or member.isdir()):
            raise UnsafeArchive(f"{member.name}: a device file, fifo or other special file is refused")
        safe = copy.copy(member)
        mode = member.mode & 0o755  # no setuid/setgid/sticky, no write for group and others
        if member.isreg() or member.islnk():
            if not mode & 0o100:
                mode &= ~0o111  # executable by others only when by the owner
            mode |= 0o600
        else:
            mode |= 0o700  # the owner can always list and fill its directories
        safe.mode = mode
        safe.uid, safe.gid, safe.uname, safe.gname = uid, gid, "", ""  # names would win over numbers
        if member.isreg():
            files.add(name)
        out.append(safe)
    return out


def _resolve(path: str, member: str, symlinks: set[str], *, outside: str = "") -> str:
    """``path`` resolved component by component from the archive's top, as the kernel
    would in an empty directory; UnsafeArchive when it is absolute, leaves the top, or
    goes on past (into or up out of) one of ``symlinks``, which the kernel would follow."""
    if posixpath.isabs(path):
        raise UnsafeArchive(f"{member}: {outside or 'an absolute name is refused'}")
    resolved: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if resolved and "/".join(resolved) in symlinks:
            raise UnsafeArchive(f"{member}: a path through the archive's symbolic link "
                                f"{'/'.join(resolved)} is refused")
        if part != "..":
            resolved.append(part)
        elif resolved:
            resolved.pop()
        else:
            raise UnsafeArchive(f"{member}: {outside or 'a name outside the archive directory is refused'}")
    return "/".join(resolved) or "."
