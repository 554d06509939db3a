"""Finding and building agentapi (`agentproxy install-agentapi`)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentproxy import agentapi
from agentproxy.agentapi import AGENTAPI_VERSION, InstallError, cached_binary, install, locate
from agentproxy.cli import main


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("AGENTPROXY_CACHE", str(root))
    return root


def test_cache_location_follows_the_environment(tmp_path: Path) -> None:
    assert agentapi.cache_root({"AGENTPROXY_CACHE": str(tmp_path)}) == tmp_path
    assert agentapi.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "agentproxy"
    assert agentapi.cache_root({}) == Path.home() / ".cache" / "agentproxy"
    assert cached_binary(environ={"AGENTPROXY_CACHE": str(tmp_path)}) == \
        tmp_path / "bin" / f"agentapi-{AGENTAPI_VERSION}" / "agentapi"


def test_locate_prefers_path_then_the_cache(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert locate() is None
    built = _executable(cached_binary())
    assert locate() == str(built)
    on_path = _executable(tmp_path / "bin" / "agentapi")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert locate() == str(on_path)


def test_a_configured_binary_is_taken_as_given(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    _executable(cached_binary())
    # Another name or a path never falls back to the cached build: that would run
    # something other than what the operator configured.
    assert locate("my-agentapi") is None
    assert locate(str(tmp_path / "missing" / "agentapi")) is None
    mine = _executable(tmp_path / "opt" / "agentapi")
    assert locate(str(mine)) == str(mine)


def test_without_go_the_error_says_what_to_install(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InstallError, match=r"Go is needed to build it: install Go 1\.24 or newer"):
        install(say=lambda _: None)
    assert main(["install-agentapi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("agentproxy: error: agentapi v0.12.1 is not installed")
    assert not cached_binary().exists()


def test_a_refused_go_install_without_sources_names_both(cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A `go` that refuses like the module proxy does: the real refusal depends on the network.
    _executable(tmp_path / "go-bin" / "go", "#!/bin/sh\necho 'go: 403 Forbidden' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "go-bin"))
    with pytest.raises(InstallError, match=r"go install github.com/coder/agentapi@v0.12.1 failed "
                                           r"\(go: 403 Forbidden\) and no source archive was given"):
        install(say=lambda _: None)


def test_a_source_that_is_not_agentapi_is_refused(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _executable(tmp_path / "go-bin" / "go", "#!/bin/sh\nexit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "go-bin"))
    other = tmp_path / "other"
    (other / "go.mod").parent.mkdir()
    (other / "go.mod").write_text("module example.com/other\n")
    with pytest.raises(InstallError, match="no go.mod of module github.com/coder/agentapi"):
        install(str(other), say=lambda _: None)
    with pytest.raises(InstallError, match="nothing.zip, do not exist: name a .tar.gz archive or a directory"):
        install(str(tmp_path / "nothing.zip"), say=lambda _: None)
    (tmp_path / "nothing.zip").write_bytes(b"PK")
    with pytest.raises(InstallError, match="must be a .tar.gz archive or a directory"):
        install(str(tmp_path / "nothing.zip"), say=lambda _: None)
    assert not cached_binary().parent.exists()


def test_an_interrupted_build_leaves_no_entry(cache: Path, tmp_path: Path) -> None:
    # A `go` that writes half a binary and then hangs, so the build can be interrupted
    # at a known point (a real build is too quick and too variable to hit reliably).
    fake_go = _executable(tmp_path / "go-bin" / "go",
                          "#!/bin/sh\nprintf 'half' > \"$GOBIN/agentapi\"\necho started > \"$MARK\"\nexec sleep 60\n")
    mark = tmp_path / "mark"
    search = [str(fake_go.parent), os.path.dirname(sys.executable), "/usr/bin", "/bin"]
    env = dict(os.environ, PATH=os.pathsep.join(search), AGENTPROXY_CACHE=str(cache), MARK=str(mark))
    proc = subprocess.Popen([sys.executable, "-m", "agentproxy", "install-agentapi"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not mark.exists():
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    entry = cached_binary().parent
    assert not entry.exists()
    leftovers = list(entry.parent.glob(f".{entry.name}.*.partial"))
    assert leftovers, "the interrupted build's work directory should be beside the entry"
    # The next build removes what the interrupted one left, and still refuses a half binary.
    _executable(fake_go, "#!/bin/sh\nprintf '#!/bin/sh\\necho wrong version' > \"$GOBIN/agentapi\"\n"
                         "chmod +x \"$GOBIN/agentapi\"\n")
    os.environ["PATH"], saved = f"{fake_go.parent}{os.pathsep}{os.environ['PATH']}", os.environ["PATH"]
    try:
        with pytest.raises(InstallError, match="reports 'wrong version', expected version 0.12.1"):
            install(say=lambda _: None)
    finally:
        os.environ["PATH"] = saved
    assert not entry.exists()
    assert not list(entry.parent.glob(f".{entry.name}.*.partial"))


@pytest.mark.slow
def test_builds_the_real_agentapi(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`go install` first, then the sources of $AGENTPROXY_AGENTAPI_SOURCE (set by `just`
    where the Go module proxy refuses the module)."""
    go = shutil.which("go")
    assert go, "Go is needed to build agentapi"
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(go), "/usr/bin", "/bin"]))
    lines: list[str] = []
    path = install(agentapi.default_source(), say=lines.append)
    assert path == cached_binary()
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
    assert "0.12.1" in out
    assert lines[0] == f"agentapi {AGENTAPI_VERSION}: go install github.com/coder/agentapi@{AGENTAPI_VERSION}"
    assert lines[-1] == f"agentapi {AGENTAPI_VERSION}: installed at {path}"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o755"
    # Once cached, nothing is built again.
    again: list[str] = []
    assert install(say=again.append) == path
    assert again == [f"agentapi {AGENTAPI_VERSION}: cached at {path}"]
