"""Installing the agent programs (`agentproxy install-agents`) and finding them in the cache.

npm itself is replaced by a small script here: these tests are about the cache
entry (atomic, checked, reused) and the errors, not about the registry (the real
install runs in `bin/just agents`, which the real Claude Code tests need).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agentproxy.agentapi import InstallError
from agentproxy.agentprograms import PROGRAMS, cache_entry, cached_program, install, npm_reason, program_path
from agentproxy.backends.local.process import find_executable
from agentproxy.cli import main

CLAUDE = PROGRAMS["claude"]

FAKE_NPM = """#!/bin/sh
# npm install --prefix DIR ... SPEC: a program that reports the version given in $FAKE_VERSION
prefix="$3"
mkdir -p "$prefix/node_modules/.bin"
printf '#!/bin/sh\\necho "%s (Claude Code)"\\n' "$FAKE_VERSION" > "$prefix/node_modules/.bin/claude"
chmod +x "$prefix/node_modules/.bin/claude"
echo "$@" >> "$FAKE_NPM_LOG"
"""


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache and a PATH with only a fake npm (and sh's own tools)."""
    monkeypatch.setenv("AGENTPROXY_CACHE", str(tmp_path / "cache"))
    tools = tmp_path / "tools"
    _script(tools / "npm", FAKE_NPM)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_VERSION", CLAUDE.version)
    monkeypatch.setenv("FAKE_NPM_LOG", str(tmp_path / "npm.log"))
    return tmp_path


def test_the_cache_entry_is_named_by_package_and_version(machine: Path):
    assert cache_entry(CLAUDE) == machine / "cache" / "agents" / f"claude-code-{CLAUDE.version}"
    assert CLAUDE.spec == f"@anthropic-ai/claude-code@{CLAUDE.version}"


def test_install_runs_npm_once_into_the_cache(machine: Path):
    said: list[str] = []
    assert cached_program("claude") is None
    assert install(say=said.append) == {"claude": program_path(CLAUDE)}
    assert cached_program("claude") == str(program_path(CLAUDE))
    assert "--no-save" in (machine / "npm.log").read_text() and CLAUDE.spec in (machine / "npm.log").read_text()
    assert install(say=said.append) == {"claude": program_path(CLAUDE)}
    assert len((machine / "npm.log").read_text().splitlines()) == 1  # the second one used the cache
    assert said[-1].endswith(f"cached at {program_path(CLAUDE)}")
    assert [p.name for p in (machine / "cache" / "agents").iterdir() if p.name.endswith(".partial")] == []


def test_local_mode_finds_the_cached_program_when_it_is_not_on_path(machine: Path):
    assert find_executable("claude") is None
    install(say=lambda line: None)
    assert find_executable("claude") == str(program_path(CLAUDE))
    assert find_executable("codex") is None  # only what agentproxy installs comes from the cache


def test_a_program_on_path_is_used_as_it_is(machine: Path):
    mine = _script(machine / "tools" / "claude", "#!/bin/sh\necho mine\n")
    said: list[str] = []
    assert install(say=said.append) == {"claude": mine}
    assert "found on PATH" in said[0] and not (machine / "npm.log").exists()


def test_a_wrong_version_leaves_no_entry(machine: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_VERSION", "0.0.1")
    with pytest.raises(InstallError, match=f"reports '0.0.1 \\(Claude Code\\)', expected version {CLAUDE.version}"):
        install(say=lambda line: None)
    assert not cache_entry(CLAUDE).exists()
    assert list((machine / "cache" / "agents").iterdir()) == [(machine / "cache" / "agents" /
                                                              f".{CLAUDE.entry}.lock")]


def test_without_npm_the_error_says_what_to_install(machine: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(machine / "nothing"))
    with pytest.raises(InstallError, match="npm is needed to install it: install Node.js and npm"):
        install(say=lambda line: None)


def test_a_failing_npm_is_reported_in_one_line(machine: Path):
    _script(machine / "tools" / "npm", "#!/bin/sh\necho 'npm error code E403' >&2\n"
                                       "echo 'npm error 403 Forbidden - GET https://registry/x' >&2\n"
                                       "echo 'npm error A complete log of this run can be found in: /x.log' >&2\n"
                                       "exit 1\n")
    with pytest.raises(InstallError) as info:
        install(say=lambda line: None)
    assert str(info.value) == f"npm install {CLAUDE.spec} failed: npm error code E403"
    assert not cache_entry(CLAUDE).exists()
    assert npm_reason("") == "" and npm_reason("just this\n") == "just this"


def test_the_command_line(machine: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    assert main(["install-agents"]) == 0
    assert capsys.readouterr().out.strip() == str(program_path(CLAUDE))
    assert main(["install-agents", "aider"]) == 1
    err = capsys.readouterr().err
    assert err == "agentproxy: error: unknown agent program 'aider'; agentproxy installs claude\n"
    monkeypatch.setenv("PATH", str(machine / "nothing"))
    monkeypatch.setenv("AGENTPROXY_CACHE", str(machine / "other-cache"))
    assert main(["install-agents"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
