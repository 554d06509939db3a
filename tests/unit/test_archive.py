"""Unpacking untrusted tar archives: the same guarantees with and without tarfile's data filter.

Every archive here is hostile or odd on purpose and is built by the test itself. Each
case runs through the check agentproxy does itself (what Python 3.11.0-3.11.3 use) and,
on Pythons that have it, through tarfile's own ``filter="data"``.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from agentproxy import archive as archive_module
from agentproxy.agentapi import InstallError, unpack_module_source
from agentproxy.archive import UnsafeArchive, data_members, extract_data, has_data_filter

# Forcing the own check on a Python that has filters draws 3.12+'s warning about the default
# changing in 3.14; where the own check runs for real (3.11.0-3.11.3) there is no such warning.
pytestmark = pytest.mark.filterwarnings("ignore:Python 3.14 will:DeprecationWarning")

Member = tuple[str, str, str | int | bytes]
"""(type, name, content): file bytes, link target, or mode for a directory."""

# The stdlib's data filter is compared with only where it exists (3.11.4+, and on CI's newest
# Python); elsewhere the own check is the one that runs, and nothing is left as skipped.
WAYS = [pytest.param(False, id="own-check")] + (
    [pytest.param(True, id="tarfile-data-filter")] if has_data_filter() else [])


def tar_bytes(*members: Member, mode: int = 0o644, uid: int = 4242) -> bytes:
    """A .tar.gz of ``members`` in order; files, dirs, symlinks, hard links, fifos, devices."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for kind, name, content in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.uname, info.gname = mode, uid, uid, "nobody", "nogroup"
            data = None
            if kind == "file":
                data = content if isinstance(content, bytes) else str(content).encode()
                info.size = len(data)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, int(content) if content else 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers
            elif kind == "blockdev":
                info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 7, 0
            else:
                raise AssertionError(kind)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.fixture
def unpack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool, bytes], Path]:
    """Extract an archive into ``tmp_path/box/dest`` one way or the other; returns dest."""
    def run(stdlib: bool, data: bytes) -> Path:
        monkeypatch.setattr(archive_module, "has_data_filter", lambda: stdlib)
        dest = tmp_path / "box" / "dest"
        dest.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            extract_data(tar, dest)
        return dest
    return run


def everything_under(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


@pytest.mark.parametrize("stdlib", WAYS)
def test_an_ordinary_source_tree_comes_out_whole(unpack, tmp_path: Path, stdlib: bool) -> None:
    dest = unpack(stdlib, tar_bytes(
        ("dir", "mod-1.0", 0o755),
        ("file", "mod-1.0/go.mod", "module example.com/mod\n"),
        ("dir", "mod-1.0/docs", 0o755),
        ("file", "mod-1.0/docs/guide.md", "guide"),
        ("symlink", "mod-1.0/docs/README.md", "../go.mod"),  # relative, stays inside
        ("hardlink", "mod-1.0/go.mod.copy", "mod-1.0/go.mod"),
    ))
    tree = dest / "mod-1.0"
    assert (tree / "go.mod").read_text() == "module example.com/mod\n"
    assert (tree / "docs" / "README.md").read_text() == "module example.com/mod\n"
    assert os.readlink(tree / "docs" / "README.md") == "../go.mod"
    assert (tree / "go.mod.copy").stat().st_ino == (tree / "go.mod").stat().st_ino
    assert everything_under(tmp_path / "box") == {"dest", *(f"dest/{p}" for p in everything_under(dest))}


@pytest.mark.parametrize("stdlib", WAYS)
def test_modes_lose_setuid_and_foreign_write_bits_and_owners_are_not_taken(unpack, stdlib: bool) -> None:
    dest = unpack(stdlib, tar_bytes(
        ("file", "suid", "x"), ("file", "plain", "y"), ("file", "private", "z"),
        mode=0o6777,
    ))
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    dest2 = dest.parent / "dest2"
    dest2.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(("file", "plain", "y"), mode=0o466)), mode="r:gz") as tar:
        extract_data(tar, dest2)
    # group/other keep read only; the owner can always read and write its files
    assert stat.S_IMODE((dest2 / "plain").stat().st_mode) == 0o644
    assert (dest / "suid").stat().st_uid == os.geteuid()  # not the archive's 4242, also as root


HOSTILE: list[tuple[str, tuple[Member, ...], str]] = [
    ("dotdot-name", (("file", "../escaped", "x"),), "outside"),
    ("dotdot-deep", (("dir", "a", 0o755), ("file", "a/../../escaped", "x")), "outside"),
    ("symlink-out", (("symlink", "link", "../escaped-dir"),), "outside"),
    ("symlink-absolute", (("symlink", "link", "/etc"),), "absolute"),
    ("symlink-then-write-through", (("symlink", "link", "/tmp"), ("file", "link/escaped", "x")), "absolute"),
    ("symlink-dot-then-up", (("symlink", "a", "."), ("symlink", "b", "a/.."),
                             ("file", "b/escaped", "x")), "symbolic link a"),
    ("symlink-dot-then-name-up", (("symlink", "a", "."), ("file", "a/../escaped", "x")), "symbolic link a"),
    ("hardlink-out", (("hardlink", "h", "../escaped"),), "outside"),
    ("hardlink-absolute", (("hardlink", "h", "/etc/passwd"),), "absolute"),
    ("fifo", (("fifo", "pipe", ""),), "special file"),
    ("char-device", (("chardev", "null", ""),), "special file"),
    ("block-device", (("blockdev", "loop", ""),), "special file"),
]


@pytest.mark.parametrize("members,rule", [pytest.param(m, r, id=i) for i, m, r in HOSTILE])
def test_the_own_check_refuses_hostile_members_before_writing_anything(unpack, tmp_path: Path,
                                                                        members, rule: str) -> None:
    with pytest.raises(UnsafeArchive, match=rule):
        unpack(False, tar_bytes(*members))
    assert everything_under(tmp_path / "box") == {"dest"}  # checked in full before the first write
    assert not (tmp_path / "escaped").exists()


if has_data_filter():  # the comparison needs the stdlib's filter (3.11.4+); CI's newest Python runs it
    @pytest.mark.parametrize("members", [pytest.param(m, id=i) for i, m, _ in HOSTILE])
    def test_tarfiles_data_filter_refuses_the_same_members(unpack, tmp_path: Path, members) -> None:
        with pytest.raises(UnsafeArchive):
            unpack(True, tar_bytes(*members))
        assert not (tmp_path / "escaped").exists()
        assert not any(p.is_symlink() and not os.path.realpath(p).startswith(str(tmp_path / "box" / "dest"))
                       for p in (tmp_path / "box").rglob("*"))


@pytest.mark.parametrize("stdlib", WAYS)
def test_an_absolute_name_never_lands_where_it_says(unpack, tmp_path: Path, stdlib: bool) -> None:
    target = tmp_path / "escaped"
    try:
        dest = unpack(stdlib, tar_bytes(("file", str(target), "x")))
    except UnsafeArchive as exc:  # the own check refuses it
        assert not stdlib and "absolute" in str(exc)
    else:  # tarfile's filter strips the leading slash
        assert stdlib and (dest / str(target).lstrip("/")).read_text() == "x"
    assert not target.exists()


def test_the_own_check_also_refuses_a_harmless_path_through_a_link() -> None:
    """Stricter than tarfile's filter, which looks at the disk: a lexical check cannot
    tell a harmless link from a hostile one, and source archives need neither."""
    members = tarfile.open(fileobj=io.BytesIO(tar_bytes(
        ("dir", "sub", 0o755), ("symlink", "alias", "sub"), ("file", "alias/file", "x"))), mode="r:gz").getmembers()
    with pytest.raises(UnsafeArchive, match="alias/file: a path through the archive's symbolic link alias"):
        data_members(members)


def test_a_hard_link_must_name_an_earlier_file_of_the_archive() -> None:
    later = tarfile.open(fileobj=io.BytesIO(tar_bytes(("hardlink", "h", "f"), ("file", "f", "x"))),
                         mode="r:gz").getmembers()
    with pytest.raises(UnsafeArchive, match="h: a hard link must point to an earlier file"):
        data_members(later)


def test_data_members_is_pure_and_sets_the_given_owner() -> None:
    members = tarfile.open(fileobj=io.BytesIO(tar_bytes(("dir", "d", 0o7777), ("file", "d/f", "x"),
                                                        mode=0o4750)), mode="r:gz").getmembers()
    safe = data_members(members, uid=1000, gid=1000)
    assert [(m.name, oct(m.mode), m.uid, m.gid, m.uname, m.gname) for m in safe] == [
        ("d", "0o755", 1000, 1000, "", ""), ("d/f", "0o750", 1000, 1000, "", "")]
    assert [(m.mode, m.uid) for m in members] == [(0o7777, 4242), (0o4750, 4242)]  # the archive's own untouched


def test_the_target_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "old").touch()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(("file", "f", "x"))), mode="r:gz") as tar:
        with pytest.raises(UnsafeArchive, match="must be empty"):
            extract_data(tar, tmp_path)


@pytest.mark.parametrize("stdlib", WAYS)
def test_a_hostile_source_archive_is_a_one_line_install_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              stdlib: bool) -> None:
    monkeypatch.setattr(archive_module, "has_data_filter", lambda: stdlib)
    source = tmp_path / "agentapi-src.tar.gz"
    source.write_bytes(tar_bytes(("file", "agentapi/go.mod", "module github.com/coder/agentapi\n"),
                                 ("symlink", "agentapi/evil", "../../../../etc")))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InstallError, match=r"^cannot unpack .*agentapi-src\.tar\.gz: .*agentapi/evil") as caught:
        unpack_module_source(source, work)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("stdlib", WAYS)
def test_a_source_archive_with_a_top_directory_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        stdlib: bool) -> None:
    monkeypatch.setattr(archive_module, "has_data_filter", lambda: stdlib)
    source = tmp_path / "agentapi-src.tar.gz"
    source.write_bytes(tar_bytes(("dir", "agentapi-0.12.1", 0o755),
                                 ("file", "agentapi-0.12.1/go.mod", "module github.com/coder/agentapi\n")))
    work = tmp_path / "work"
    work.mkdir()
    tree = unpack_module_source(source, work)
    assert tree.name == "agentapi-0.12.1" and (tree / "go.mod").is_file()
    (tree / "new-file").write_text("the build adds files")  # writable by its owner
