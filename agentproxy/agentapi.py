"""The agentapi executable: which version agentproxy runs, where it is, how to get it.

Every agent is an ``agentapi`` server. agentproxy looks for it, in this order:
the configured path (``local_mode.agentapi_binary`` when it is not the default
name), ``agentapi`` on ``PATH``, and the user-level cache
(``~/.cache/agentproxy/bin/agentapi-v0.12.1/agentapi``), where
``agentproxy install-agentapi`` puts the binary it builds.

Building tries ``go install github.com/coder/agentapi@v0.12.1`` first, as
anyone with Go would. Where the Go module proxy refuses that module, it builds
from a source archive of the same tag (a ``.tar.gz`` or a directory). The build
happens in a temporary directory beside the cache entry and is renamed into
place only once the binary reports the expected version, so an interrupted
build never leaves a half-written entry behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .archive import UnsafeArchive, extract_data

AGENTAPI_VERSION = "v0.12.1"
AGENTAPI_MODULE = "github.com/coder/agentapi"
DEFAULT_BINARY = "agentapi"
"""The default of ``local_mode.agentapi_binary``: look on PATH, then in the cache."""
SOURCE_VARIABLE = "AGENTPROXY_AGENTAPI_SOURCE"
"""Environment variable naming a source archive or directory to build from."""
GO_HINT = "install Go 1.24 or newer (https://go.dev/dl/) and put `go` on PATH"

Say = Callable[[str], None]


class InstallError(Exception):
    """agentapi could not be found or built; the message says why and what to do."""


def cache_root(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """agentproxy's user-level cache: ``$AGENTPROXY_CACHE``, else
    ``$XDG_CACHE_HOME/agentproxy``, else ``~/.cache/agentproxy``."""
    env = os.environ if environ is None else environ
    if env.get("AGENTPROXY_CACHE"):
        return Path(env["AGENTPROXY_CACHE"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "agentproxy"


def cached_binary(version: str = AGENTAPI_VERSION, environ: dict[str, str] | None = None) -> Path:
    """Where the cache keeps agentapi ``version``."""
    return cache_root(environ) / "bin" / f"agentapi-{version}" / "agentapi"


def _executable(path: Path | str) -> str | None:
    candidate = os.path.abspath(os.path.expanduser(str(path)))
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None


def locate(configured: str = DEFAULT_BINARY, search_path: str | None = None) -> str | None:
    """The absolute path of the agentapi to run, or None when there is none.

    A configured path or name other than the default is taken as given (looked up
    on ``search_path``/``PATH`` when it has no ``/``); the default also falls back
    to the cache.
    """
    if not configured:
        return None
    if os.sep in configured:
        return _executable(configured)
    found = shutil.which(configured, path=search_path)
    if found:
        return os.path.abspath(found)
    if configured == DEFAULT_BINARY:
        return _executable(cached_binary())
    return None


def default_source(environ: dict[str, str] | os._Environ[str] | None = None) -> str | None:
    """The source to build from when ``go install`` is refused: ``$AGENTPROXY_AGENTAPI_SOURCE``."""
    env = os.environ if environ is None else environ
    return env.get(SOURCE_VARIABLE) or None


def install(source: str | None = None, *, say: Say = print, version: str = AGENTAPI_VERSION,
            go: str = "go") -> Path:
    """Make sure agentapi ``version`` exists in the cache and return its path.

    A binary already on PATH or in the cache is returned as it is. Otherwise
    ``go install`` is tried, then ``source`` (an archive or directory of the
    agentapi sources at that version). Raises :class:`InstallError`.
    """
    final = cached_binary(version)
    on_path = shutil.which(DEFAULT_BINARY)
    if on_path:
        say(f"agentapi: using {os.path.abspath(on_path)} (found on PATH)")
        return Path(os.path.abspath(on_path))
    if _executable(final):
        say(f"agentapi {version}: cached at {final}")
        return final
    go_path = shutil.which(go)
    if go_path is None:
        raise InstallError(f"agentapi {version} is not installed and Go is needed to build it: {GO_HINT}")
    final.parent.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(final.parent):
        if _executable(final):  # another build finished while this one waited for the lock
            say(f"agentapi {version}: cached at {final}")
            return final
        remove_leftovers(final.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{final.parent.name}.", suffix=".partial", dir=final.parent.parent))
        try:
            built = work / "agentapi"
            _build(go_path, source, built, version, say)
            _check_version(built, version)
            work.chmod(0o755)  # mkdtemp makes it private; the entry is an ordinary directory
            if final.parent.exists():  # an entry without a working binary: replace it
                shutil.rmtree(final.parent)
            os.rename(work, final.parent)  # atomic: the entry appears whole or not at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    say(f"agentapi {version}: installed at {final}")
    return final


@contextlib.contextmanager
def build_lock(entry: Path) -> Iterator[None]:
    """One build of a cache entry at a time (two `just` commands started together)."""
    with open(entry.parent / f".{entry.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(entry: Path) -> None:
    """Remove the temporary directories of interrupted builds of ``entry`` (call it holding the lock)."""
    for leftover in entry.parent.glob(f".{entry.name}.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _build(go: str, source: str | None, out: Path, version: str, say: Say) -> None:
    say(f"agentapi {version}: go install {AGENTAPI_MODULE}@{version}")
    attempt = subprocess.run([go, "install", "-trimpath", "-ldflags", "-s -w", f"{AGENTAPI_MODULE}@{version}"],
                             env=_go_env(out.parent), capture_output=True, text=True, cwd=out.parent)
    if attempt.returncode == 0 and out.exists():
        return
    reason = _last_line(attempt.stderr) or f"exit status {attempt.returncode}"
    if source is None:
        raise InstallError(f"go install {AGENTAPI_MODULE}@{version} failed ({reason}) and no source archive "
                           f"was given (--source PATH or ${SOURCE_VARIABLE})")
    say(f"agentapi {version}: go install failed ({reason}); building from {source}")
    with tempfile.TemporaryDirectory(prefix="agentapi-src-") as tmp:
        tree = unpack_module_source(Path(source).expanduser(), Path(tmp))
        # The web UI is embedded with go:embed from lib/httpapi/chat; the source archive
        # leaves it out, and one file is enough for the embed to compile (/chat is then
        # a 404, the API is unaffected).
        chat = tree / "lib" / "httpapi" / "chat"
        chat.mkdir(parents=True, exist_ok=True)
        if not any(chat.iterdir()):
            (chat / "marker").touch()
        say(f"agentapi {version}: go build in {tree.name} (the first build downloads its modules)")
        result = subprocess.run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
                                cwd=tree, env=_go_env(), capture_output=True, text=True)
        if result.returncode != 0 or not out.exists():
            raise InstallError(f"building agentapi from {source} failed: "
                               f"{_last_line(result.stderr) or f'exit status {result.returncode}'}")


def unpack_module_source(source: Path, into: Path, module: str = AGENTAPI_MODULE) -> Path:
    """A private, writable copy of the Go module ``module``'s source tree (a ``.tar.gz``
    archive or a directory) under ``into``: a build adds files to it. Returns the directory
    of its ``go.mod``, at the top or one level down (an archive's own top directory)."""
    if not source.exists():
        raise InstallError(f"the sources of {module} to build from, {source}, do not exist: "
                           "name a .tar.gz archive or a directory that does")
    if source.is_dir():
        tree = into / "src"
        shutil.copytree(source, tree, symlinks=True)
        for path in (tree, *tree.rglob("*")):  # copies of Go's module cache are read-only
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
    elif source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(source, "r:gz") as archive:
                tree = into / "src"
                tree.mkdir()
                extract_data(archive, tree)
        except (tarfile.TarError, OSError, UnsafeArchive) as exc:
            raise InstallError(f"cannot unpack {source}: {exc}") from None
    else:
        raise InstallError(f"source of {module} {source}: must be a .tar.gz archive or a directory")
    for candidate in (tree, *sorted(p for p in tree.iterdir() if p.is_dir())):
        mod = candidate / "go.mod"
        if mod.is_file() and f"module {module}" in mod.read_text(errors="replace").splitlines():
            return candidate
    raise InstallError(f"source {source}: no go.mod of module {module} at its top level")


def _check_version(binary: Path, version: str) -> None:
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"the built agentapi does not run: {exc}") from None
    reported = (result.stdout + result.stderr).strip()
    if version.lstrip("v") not in reported.split():
        raise InstallError(f"the built agentapi reports {reported!r}, expected version {version.lstrip('v')}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
