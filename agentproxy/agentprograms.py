"""The programs of real coding agents: which versions agentproxy installs, where, and how.

Claude Code is published on the npm registry; its package brings a static binary
for the platform (Node is needed to install it, not to run it). ``agentproxy
install-agents`` puts a pinned version into the user-level cache,
``~/.cache/agentproxy/agents/claude-code-2.1.328/``, and local mode runs an
agent's program from there when it is not on ``PATH`` (see
:func:`cached_program`), as it does with agentapi.

As with agentapi, a program already on ``PATH`` or in the cache is used as it
is; otherwise ``npm install`` runs in a temporary directory beside the cache
entry, the program must report the pinned version, and only then is the
directory renamed into place: an interrupted install leaves no half entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .agentapi import InstallError, build_lock, cache_root, remove_leftovers

Say = Callable[[str], None]
NPM_HINT = "install Node.js and npm (e.g. `apt-get install nodejs npm`) and put `npm` on PATH"
NPM_TIMEOUT = 900.0
"""The longest an ``npm install`` may take (Claude Code's package is about 370 MB)."""


@dataclass(frozen=True)
class NpmProgram:
    """An agent program from an npm package, at a pinned version."""

    program: str
    """The executable's name (what ``agents.commands`` runs)."""
    package: str
    version: str

    @property
    def entry(self) -> str:
        """The cache entry's directory name, e.g. ``claude-code-2.1.328``."""
        return f"{self.package.rsplit('/', 1)[-1]}-{self.version}"

    @property
    def spec(self) -> str:
        """What ``npm install`` is given."""
        return f"{self.package}@{self.version}"


PROGRAMS: dict[str, NpmProgram] = {
    "claude": NpmProgram("claude", "@anthropic-ai/claude-code", "2.1.328"),
}
"""Agent programs agentproxy installs, by program name."""


def cache_entry(program: NpmProgram, environ: dict[str, str] | None = None) -> Path:
    """The directory of ``program``'s cache entry."""
    return cache_root(environ) / "agents" / program.entry


def program_path(program: NpmProgram, environ: dict[str, str] | None = None) -> Path:
    """Where the cache keeps ``program``'s executable."""
    return cache_entry(program, environ) / "node_modules" / ".bin" / program.program


def cached_program(name: str, environ: dict[str, str] | None = None) -> str | None:
    """The cached executable of the agent program ``name`` (``claude``), or None when the
    program is not one agentproxy installs or is not installed."""
    program = PROGRAMS.get(name)
    if program is None:
        return None
    path = program_path(program, environ)
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def install(names: Iterable[str] = tuple(PROGRAMS), *, say: Say = print, npm: str = "npm") -> dict[str, Path]:
    """Make sure every program of ``names`` is on PATH or in the cache; their paths.

    Raises :class:`~agentproxy.agentapi.InstallError` (one line: what failed, what to do).
    """
    found: dict[str, Path] = {}
    for name in names:
        program = PROGRAMS.get(name)
        if program is None:
            raise InstallError(f"unknown agent program {name!r}; agentproxy installs {', '.join(sorted(PROGRAMS))}")
        found[name] = _install_one(program, say, npm)
    return found


def _install_one(program: NpmProgram, say: Say, npm: str) -> Path:
    on_path = shutil.which(program.program)
    if on_path:
        say(f"{program.program}: using {os.path.abspath(on_path)} (found on PATH)")
        return Path(os.path.abspath(on_path))
    final = program_path(program)
    entry = cache_entry(program)
    if cached_program(program.program):
        say(f"{program.spec}: cached at {final}")
        return final
    npm_path = shutil.which(npm)
    if npm_path is None:
        raise InstallError(f"{program.spec} is not installed and npm is needed to install it: {NPM_HINT}")
    entry.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(entry):
        if cached_program(program.program):  # another install finished while this one waited
            say(f"{program.spec}: cached at {final}")
            return final
        remove_leftovers(entry)
        work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=entry.parent))
        try:
            say(f"{program.spec}: npm install (about 370 MB)")
            _npm_install(npm_path, program, work)
            check_version(work / "node_modules" / ".bin" / program.program, program)
            work.chmod(0o755)  # mkdtemp makes it private; the entry is an ordinary directory
            if entry.exists():  # an entry without a working program: replace it
                shutil.rmtree(entry)
            os.rename(work, entry)  # atomic: the entry appears whole or not at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    say(f"{program.spec}: installed at {final}")
    return final


def _npm_install(npm: str, program: NpmProgram, into: Path) -> None:
    argv = [npm, "install", "--prefix", str(into), "--no-save", "--no-audit", "--no-fund", "--loglevel=error",
            program.spec]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=NPM_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InstallError(f"npm install {program.spec} took longer than {NPM_TIMEOUT:g}s") from None
    except OSError as exc:
        raise InstallError(f"npm install {program.spec} could not run: {exc}") from None
    if result.returncode != 0:
        raise InstallError(f"npm install {program.spec} failed: "
                           f"{npm_reason(result.stderr) or f'exit status {result.returncode}'}")


def check_version(binary: Path, program: NpmProgram) -> None:
    """Raise :class:`InstallError` unless ``binary --version`` names ``program``'s version."""
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"the installed {program.program} does not run: {exc}") from None
    reported = (result.stdout + result.stderr).strip()
    if program.version not in reported.split():
        raise InstallError(f"the installed {program.program} reports {reported[:200]!r}, "
                           f"expected version {program.version}")


def npm_reason(stderr: str) -> str:
    """The telling line of npm's error output: its first ``npm error`` line other than the
    pointer to its log file, else its last line."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("npm error", "npm ERR!")) and "complete log" not in line:
            return line
    return lines[-1] if lines else ""
