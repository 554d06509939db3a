"""Every failure of a recipe that a user can foresee ends in one line that says what to do.

Each test provokes one such failure of `bin/just RECIPE` (or of the script the recipe runs)
for real, as a subprocess: a PATH without Go, an unreachable Go module proxy, package index
or npm registry, no cluster, a Python too old, bad arguments. It asserts a non-zero exit
status, no Python traceback anywhere in the output, and that the last line of the output
(after `just`'s own "recipe failed" line) is the message naming what to do.

HOME is a fresh directory in every test, so no cache of the developer's machine hides a
failure, and nothing a test does reaches the network: every "unreachable" address is
127.0.0.1:9 (the discard port, which nothing here listens on), or the tool is told to stay
offline (GOPROXY=off).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
JUST = ROOT / "bin" / "just"
UNREACHABLE = "http://127.0.0.1:9"
GO = shutil.which("go")


def tool_dir(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is needed for this test"
    return os.path.dirname(found)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with a fresh HOME, this test run's venv and Python, only the
    system's directories on PATH (no Go: a test that wants it adds it), and no cluster."""
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AGENTPROXY_", "KUBECONFIG", "GO", "PIP_", "npm_config_", "XDG_"))}
    return {**keep, "HOME": str(home), "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
            "PYTHON": sys.executable, "AGENTPROXY_VENV": sys.prefix}


def run(argv: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *hints: str) -> str:
    """Non-zero, no traceback, and the last line (before just's own) holds every hint."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("error: recipe `")]
    assert lines, output
    for hint in hints:
        assert hint in lines[-1], output
    return lines[-1]


# --- bin/just itself: the Python it is given, and installing into .venv ---------------------------

def test_a_python_that_does_not_exist(env: dict[str, str]) -> None:
    env["PYTHON"] = "python3-that-does-not-exist"
    assert_one_line_failure(run([str(JUST), "--list"], env), "no Python found", "set PYTHON=")


def _old_python(tmp_path: Path) -> str:
    """A real Python older than 3.11 when the machine has one (pyenv's, or on PATH), else a
    stand-in script that answers like Python 3.10 (stated: the machine may have no old one)."""
    candidates = sorted(Path.home().glob(".pyenv/versions/3.[0-9].*/bin/python3"))
    candidates += sorted(Path.home().glob(".pyenv/versions/3.10.*/bin/python3"))
    candidates += [Path(p) for p in map(shutil.which, ("python3.10", "python3.9", "python2")) if p]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    standin = tmp_path / "python3.10"
    standin.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "Python 3.10.0"; exit 0; }\nexit 1\n')
    standin.chmod(0o755)
    return str(standin)


def test_a_python_older_than_311_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    env["PYTHON"] = _old_python(tmp_path)
    line = assert_one_line_failure(run([str(JUST), "--list"], env), "Python 3.11 or newer is required",
                                   env["PYTHON"], "set PYTHON=")
    assert " is Python 3.1" in line or " is Python 3." in line or " is Python 2." in line


def test_no_package_index_when_installing_the_venv(env: dict[str, str], tmp_path: Path) -> None:
    env.update(AGENTPROXY_VENV=str(tmp_path / "venv"), PIP_INDEX_URL=f"{UNREACHABLE}/simple", PIP_RETRIES="0",
               PIP_TIMEOUT="5", PIP_CONFIG_FILE=os.devnull)  # no find-links of the machine's pip.conf
    assert_one_line_failure(run([str(JUST), "--list"], env), "pip could not install", "PIP_INDEX_URL")


# --- agentapi and the Go tools ---------------------------------------------------------------------

def test_agentapi_without_go(env: dict[str, str]) -> None:
    assert_one_line_failure(run([str(JUST), "agentapi"], env), "install Go 1.24 or newer")


def test_agentapi_without_the_module_proxy_and_without_sources(env: dict[str, str]) -> None:
    """What a checkout without ../shared meets where the module proxy is out of reach."""
    env.update(PATH=os.pathsep.join([tool_dir("go"), env["PATH"]]), GOPROXY=f"{UNREACHABLE}",
               AGENTPROXY_AGENTAPI_SOURCE="")
    assert_one_line_failure(run([str(JUST), "agentapi"], env), "go install github.com/coder/agentapi@v0.12.1 failed",
                            "AGENTPROXY_AGENTAPI_SOURCE")


def test_agentapi_with_sources_that_do_not_exist(env: dict[str, str], tmp_path: Path) -> None:
    env.update(PATH=os.pathsep.join([tool_dir("go"), env["PATH"]]), GOPROXY="off",
               AGENTPROXY_AGENTAPI_SOURCE=str(tmp_path / "missing.tar.gz"))
    assert_one_line_failure(run([str(JUST), "agentapi"], env), "missing.tar.gz, do not exist")


@pytest.mark.parametrize("recipe", ["agentapi", "agentapi-proxy"])
def test_a_cache_that_cannot_be_written(env: dict[str, str], tmp_path: Path, recipe: str) -> None:
    (tmp_path / "a-file").write_text("in the way of the cache directory")
    env.update(PATH=os.pathsep.join([tool_dir("go"), env["PATH"]]), AGENTPROXY_CACHE=str(tmp_path / "a-file" / "cache"))
    assert_one_line_failure(run([str(JUST), recipe], env), "cannot write", "set AGENTPROXY_CACHE to a writable directory")


def test_agentapi_proxy_without_go(env: dict[str, str]) -> None:
    assert_one_line_failure(run([str(JUST), "agentapi-proxy"], env), "install Go 1.24 or newer")


@pytest.mark.parametrize("recipe", ["build-testenv", "deploy-tools"])
def test_control_plane_tools_without_go(env: dict[str, str], recipe: str) -> None:
    assert_one_line_failure(run([str(JUST), recipe], env), "Go 1.24 or newer is required", "PATH")


def test_control_plane_tools_without_the_module_proxy(env: dict[str, str]) -> None:
    env.update(PATH=os.pathsep.join([tool_dir("go"), env["PATH"]]), GOPROXY="off")
    assert_one_line_failure(run([str(JUST), "build-testenv"], env), "building etcd failed", "GOPROXY")


def test_cluster_up_before_its_binaries_are_built(env: dict[str, str], tmp_path: Path) -> None:
    """The script `cluster-up` runs after build-testenv, on a cache that lacks the binaries."""
    env.update(AGENTPROXY_CACHE=str(tmp_path / "cache"), AGENTPROXY_CLUSTER_DIR=str(tmp_path / "cluster"))
    assert_one_line_failure(run([sys.executable, "-m", "testenv.cluster", "up"], env), "not built yet",
                            "testenv/build.sh")


# --- the benchmark's peers and Debian's tools ------------------------------------------------------

def test_chp_without_the_npm_registry(env: dict[str, str], tmp_path: Path) -> None:
    env.update(PATH=os.pathsep.join([tool_dir("npm"), tool_dir("node"), env["PATH"]]),
               AGENTPROXY_CACHE=str(tmp_path / "cache"), npm_config_registry=f"{UNREACHABLE}/",
               npm_config_fetch_retries="0", npm_config_cache=str(tmp_path / "npm-cache"))
    assert_one_line_failure(run([str(JUST), "chp"], env), "npm could not install configurable-http-proxy",
                            "registry")


def _only(tmp_path: Path, *tools: str) -> str:
    """A PATH with these tools alone (no apt-get, no chromium, no wrk)."""
    bin_dir = tmp_path / "only-bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_a_missing_required_package_where_apt_get_is_not_there(env: dict[str, str], tmp_path: Path) -> None:
    """The browser recipe's script (chromium is required by the dashboard's tests)."""
    env["PATH"] = _only(tmp_path, "bash", "id")
    assert_one_line_failure(run(["testenv/package.sh", "chromium-absent", "chromium"], env),
                            "chromium-absent is missing", "install the package that has chromium-absent")


def test_a_missing_optional_package_is_told_and_skipped(env: dict[str, str], tmp_path: Path) -> None:
    """The wrk and socat recipes' script: the benchmark reports what is missing, nothing fails."""
    env["PATH"] = _only(tmp_path, "bash", "id")
    result = run(["testenv/package.sh", "wrk-absent", "wrk", "the benchmark reports it as missing"], env)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "wrk-absent is missing and this machine has no apt-get: install the package that has wrk-absent "
        "(wrk on Debian); the benchmark reports it as missing"]


# --- clusters ----------------------------------------------------------------------------------------

def test_e2e_without_a_cluster(env: dict[str, str]) -> None:
    assert_one_line_failure(run([str(JUST), "e2e"], env), "no cluster", "cluster-up")


@pytest.mark.parametrize("recipe", [["bench-k8s"], ["bench-real-node"], ["bench-suspend", "--k8s"]])
def test_cluster_benchmarks_without_a_cluster(env: dict[str, str], recipe: list[str]) -> None:
    assert_one_line_failure(run([str(JUST), *recipe], env), "no cluster", "cluster-up")


def test_a_cluster_benchmark_whose_cluster_does_not_answer(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{UNREACHABLE.replace('http', 'https')}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    env["KUBECONFIG"] = str(config)
    assert_one_line_failure(run([str(JUST), "bench-k8s"], env), "cannot be reached", "cluster-status")


@pytest.mark.parametrize("recipe", ["kind-up", "kind-down"])
def test_kind_recipes_without_kind(env: dict[str, str], recipe: str) -> None:
    assert not any(os.path.exists(os.path.join(d, "kind")) for d in env["PATH"].split(os.pathsep))
    assert_one_line_failure(run([str(JUST), recipe], env), "kind is missing", "cluster-up")


# --- bad arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,hint", [
    (["render", "--session", "Bad Session!"], "session"),
    (["render", "--agent", "a1"], "the following arguments are required: --session"),
    (["bench-render", "--agents", "0"], "--agents and --repeat must be at least 1"),
    (["no-such-recipe"], "no-such-recipe"),
])
def test_bad_arguments(env: dict[str, str], argv: list[str], hint: str) -> None:
    assert_one_line_failure(run([str(JUST), *argv], env), hint)


def test_run_on_a_port_that_is_taken(env: dict[str, str], tmp_path: Path) -> None:
    """`bin/just run` where something already listens (the agentapi already installed is put
    on PATH: the test is about the server's start, not about installing agentapi)."""
    agentapi = shutil.which("agentapi") or _cached_agentapi()
    env["PATH"] = os.pathsep.join([os.path.dirname(agentapi), env["PATH"]])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_failure(run([str(JUST), "run", "--set", f"server.port={port}",
                                     "--set", f"local_mode.data_dir={tmp_path / 'data'}"], env, timeout=120),
                                str(port))


def _cached_agentapi() -> str:
    from agentproxy.agentapi import locate

    found = locate()
    assert found, "agentapi is needed (bin/just agentapi)"
    return found
