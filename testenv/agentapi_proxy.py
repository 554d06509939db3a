#!/usr/bin/env python3
"""Build the Go agentapi-proxy v1.73.0 (the peer whose session API agentproxy also
serves) into the user-level cache, for the tests that compare the two.

The entry ``~/.cache/agentproxy/bin/agentapi-proxy-v1.73.0/`` (``$AGENTPROXY_CACHE``
or ``$XDG_CACHE_HOME`` move it, as for agentapi) holds two programs:

- ``agentapi-proxy``: the peer's own command, built unchanged (its ``client`` CLI);
- ``agentapi-proxy-loopback``: the peer's server (its ``pkg/proxy``, unchanged) on a
  loopback address; its own ``server`` command listens on every interface and has no
  option to choose one (``testenv/agentapi-proxy/main.go``).

The sources come from ``$AGENTPROXY_AGENTAPI_PROXY_SOURCE`` (a ``.tar.gz`` or a
directory) when set; else from the Go module proxy (``go mod download``); where
that refuses the module, from ``../shared/third_party/agentapi-proxy-1.73.0-src.tar.gz``
beside this checkout, when it exists. As ``agentproxy install-agentapi`` does, the
build happens in a temporary directory beside the entry, which is renamed into
place only once both programs run, under the same lock.

Run: ``python -m testenv.agentapi_proxy`` prints the entry's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agentproxy.agentapi import InstallError, build_lock, cache_root, remove_leftovers, unpack_module_source

VERSION = "v1.73.0"
MODULE = "github.com/takutakahashi/agentapi-proxy"
SOURCE_VARIABLE = "AGENTPROXY_AGENTAPI_PROXY_SOURCE"
ROOT = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = ROOT.parent / "shared" / "third_party" / f"agentapi-proxy-{VERSION.lstrip('v')}-src.tar.gz"
WRAPPER = Path(__file__).resolve().parent / "agentapi-proxy" / "main.go"
PROGRAMS = ("agentapi-proxy", "agentapi-proxy-loopback")


class BuildError(Exception):
    """The peer could not be built; the message says why."""


def entry(environ: dict[str, str] | None = None) -> Path:
    """The cache entry of the peer's programs."""
    return cache_root(environ) / "bin" / f"agentapi-proxy-{VERSION}"


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in PROGRAMS)


def ensure(say=lambda message: print(message, file=sys.stderr)) -> Path:
    """The cache entry with both programs, built first when it is missing."""
    final = entry()
    if _complete(final):
        return final
    go = shutil.which("go")
    if go is None:
        raise BuildError("Go is needed to build agentapi-proxy: install Go 1.24 or newer and put `go` on PATH")
    final.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(final):
        if _complete(final):  # another build finished while this one waited for the lock
            return final
        remove_leftovers(final)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        try:
            with tempfile.TemporaryDirectory(prefix="agentapi-proxy-src-") as tmp:
                tree = _sources(go, Path(tmp), say)
                _build(go, tree, work, say)
            for name in PROGRAMS:
                _check_runs(work / name)
            work.chmod(0o755)  # mkdtemp makes it private; the entry is an ordinary directory
            if final.exists():  # an entry without working programs: replace it
                shutil.rmtree(final)
            os.rename(work, final)  # atomic: the entry appears whole or not at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    say(f"agentapi-proxy {VERSION}: built into {final}")
    return final


def _go_env() -> dict[str, str]:
    return dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")


def _sources(go: str, into: Path, say) -> Path:
    """A private, writable copy of the peer's source tree (the build adds a package to it)."""
    given = os.environ.get(SOURCE_VARIABLE)
    if given:
        return _unpack(Path(given).expanduser(), into)
    say(f"agentapi-proxy {VERSION}: go mod download {MODULE}@{VERSION}")
    download = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], env=_go_env(),
                              capture_output=True, text=True, cwd=into)
    try:
        answer = json.loads(download.stdout or "{}")
    except ValueError:
        answer = {}
    if download.returncode == 0 and answer.get("Dir"):
        return _unpack(Path(answer["Dir"]), into)
    reason = _last_line(answer.get("Error") or download.stderr) or f"exit status {download.returncode}"
    if not SHARED_ARCHIVE.is_file():
        raise BuildError(f"the Go module proxy refused {MODULE}@{VERSION} ({reason}) and no source was "
                         f"given: set ${SOURCE_VARIABLE} to its source archive or directory")
    say(f"agentapi-proxy {VERSION}: the module proxy refused it ({reason}); building from {SHARED_ARCHIVE}")
    return _unpack(SHARED_ARCHIVE, into)


def _unpack(source: Path, into: Path) -> Path:
    try:
        return unpack_module_source(source, into, MODULE)
    except InstallError as exc:
        raise BuildError(str(exc)) from None


def _build(go: str, tree: Path, out: Path, say) -> None:
    wrapper = tree / "agentproxy-loopback"
    wrapper.mkdir()
    shutil.copy(WRAPPER, wrapper / "main.go")
    say(f"agentapi-proxy {VERSION}: go build in {tree} (the first build downloads its modules)")
    for name, package in (("agentapi-proxy", "."), ("agentapi-proxy-loopback", "./agentproxy-loopback")):
        result = subprocess.run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / name), package],
                                cwd=tree, env=_go_env(), capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"building {name} failed: {_last_line(result.stderr) or result.returncode}")


def _check_runs(program: Path) -> None:
    try:
        result = subprocess.run([str(program), "--help"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"the built {program.name} does not run: {exc}") from None
    if result.returncode != 0:
        raise BuildError(f"the built {program.name} --help exited with {result.returncode}: "
                         f"{_last_line(result.stderr)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> int:
    try:
        print(ensure())
    except BuildError as exc:
        print(f"agentapi-proxy: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the cache cannot be written (a read-only HOME, a file in the way, a full disk)
        print(f"agentapi-proxy: error: cannot write into {entry().parent}: {exc.strerror or exc} ({exc.filename}); "
              "set AGENTPROXY_CACHE to a writable directory", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
