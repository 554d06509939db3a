"""Container images for the real node, built without Docker or a registry.

``python -m testenv.image agent|proxy|pause|helper`` builds an image as an
OCI archive in the user-level cache (``$AGENTPROXY_CACHE/images``) and prints
its path (``python -m testenv.cluster load-image PATH`` loads it into the real
node's containerd).

- ``agent`` (``agentapi-proxy:latest``, the default ``k8s_mode.image``): what
  the repository's ``Dockerfile`` gives Docker users: the static agentapi in
  ``/usr/local/bin``, Python 3 and agentproxy (whose ``agentproxy.demo_agent``
  is the echo agent), user ``agent`` (uid 1000) with ``/home/agent/work``,
  entrypoint ``agentapi``; and Claude Code's native binary (the pinned version
  ``agentproxy install-agents`` puts into the cache) as ``/usr/local/bin/claude``,
  with bash and coreutils for its Bash tool. One image for every agent type, as
  ``k8s_mode.image`` is one image: an agent's type picks a command, not an image.
  Python and the shell come from the distribution's packages (``apt-get
  download`` + ``dpkg-deb -x``).
- ``proxy`` (``agentproxy:latest``, what ``deploy/`` runs): the ``proxy`` target
  of the ``Dockerfile``: Python 3 from the distribution's packages, agentproxy
  and its dependencies (the very versions of the environment that builds it,
  compiled to bytecode that is never checked against file times), user
  ``agentproxy`` (uid 65532), ``python3 -m agentproxy serve``.
- ``pause``: the pod sandbox, a tiny static Go program (``pause/pause.go``).
- ``helper``: busybox (Debian's ``busybox-static``) for local-path-provisioner's
  helper pods, which create and remove volume directories.

An archive is rebuilt only when what goes into it changes (its name carries a
digest of the inputs).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import importlib.metadata
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import oci
from .layout import HERE, cache_dir

ROOT = HERE.parent
AGENT_REF = "docker.io/library/agentapi-proxy:latest"
PROXY_REF = "docker.io/library/agentproxy:latest"
PROXY_UID = 65532
PAUSE_REF = "agentproxy.test/pause:1"
HELPER_REF = "agentproxy.test/local-path-helper:1"
AGENT_UID = 1000
# Distribution packages an image holds, with their dependencies, minus those
# only a package manager or a full system needs.
AGENT_PACKAGES = ["python3"]
CLAUDE_PACKAGES = ["bash", "coreutils"]
"""What Claude Code's Bash tool runs commands with."""
NOT_NEEDED = {"dpkg", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "install-info", "tar",
              "mailcap", "mime-support", "debconf", "readline-common", "tzdata"}
DOCS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale")


def _log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def _run(argv: list[str], **kwargs) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout
    except FileNotFoundError:
        raise SystemExit(f"[image] error: {argv[0]} is needed to build images and is not installed") from None
    except subprocess.CalledProcessError as exc:
        lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
        raise SystemExit(f"[image] error: {' '.join(argv[:4])} ... failed: "
                         f"{lines[-1] if lines else f'exit status {exc.returncode}'}") from None


def images_dir() -> Path:
    path = cache_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- distribution packages ------------------------------------------------------

def _known(packages: list[str]) -> None:
    """Make sure apt's package lists know ``packages`` (a fresh machine may have none yet)."""
    try:
        if subprocess.run(["apt-cache", "show", "--no-all-versions", *packages], capture_output=True).returncode == 0:
            return
    except FileNotFoundError:
        raise SystemExit("[image] error: images are built from Debian's packages and this machine has no "
                         "apt-cache; build them on Debian (or use the Dockerfile)") from None
    if os.geteuid() != 0:
        raise SystemExit(f"[image] error: apt knows no package {' '.join(packages)}; run apt-get update as root")
    _log("apt-get update")
    _run(["apt-get", "update", "-q"])


def package_closure(roots: list[str]) -> list[str]:
    """``roots`` and everything they depend on (no recommends), minus NOT_NEEDED."""
    _known(roots)
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *roots])
    names = {line.strip() for line in out.splitlines() if line and not line[0].isspace() and not line.startswith("<")}
    return sorted(names - NOT_NEEDED)


def download(packages: list[str]) -> list[Path]:
    """The .deb files of ``packages`` (candidate versions), downloaded once into the cache."""
    _known(packages)
    debs = images_dir() / "debs"
    debs.mkdir(exist_ok=True)
    have = {p.name.split("_")[0]: p for p in debs.glob("*.deb")}
    wanted = {}
    for line in _run(["apt-cache", "show", "--no-all-versions", *packages]).splitlines():
        if line.startswith("Filename: "):
            name = Path(line.split(" ", 1)[1]).name
            wanted[name.split("_")[0]] = name
    missing = [pkg for pkg, name in wanted.items() if not (debs / name).exists()]
    if missing:
        _log(f"downloading {len(missing)} packages")
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            _run(["apt-get", "download", "-q", *missing], cwd=tmp)
            # apt-get names files with the epoch escaped (1%3a...): keep the archive's names.
            for deb in Path(tmp).glob("*.deb"):
                pkg = deb.name.split("_")[0]
                if pkg in wanted:
                    deb.replace(debs / wanted[pkg])
    stale = [p for pkg, p in have.items() if pkg in wanted and p.name != wanted[pkg]]
    for p in stale:
        p.unlink(missing_ok=True)
    return [debs / name for name in sorted(wanted.values())]


def unpack(debs: list[Path], rootfs: Path) -> None:
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)])
    for docs in DOCS:
        shutil.rmtree(rootfs / docs, ignore_errors=True)


# --- inputs ------------------------------------------------------------------------

def _digest(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.as_posix().encode())
            h.update(part.read_bytes())
        else:
            h.update(part if isinstance(part, bytes) else part.encode())
    return h.hexdigest()[:16]


def _sources() -> list[Path]:
    """The files agentproxy's wheel is built from."""
    files = [ROOT / "pyproject.toml", ROOT / "README.md"]
    for top in ("agentproxy", "templates"):
        files += sorted(p for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def agentapi_binary() -> Path:
    """The static agentapi that ``agentproxy install-agentapi`` finds or builds."""
    path = Path(_run([sys.executable, "-m", "agentproxy", "install-agentapi"]).strip().splitlines()[-1])
    if _is_dynamic(path):
        raise SystemExit(f"[image] error: {path} is dynamically linked; the image needs a static agentapi "
                         "(build it with CGO_ENABLED=0)")
    return path


def _is_dynamic(path: Path) -> bool:
    """Whether an ELF executable names a program interpreter (PT_INTERP)."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return True
    phoff = int.from_bytes(data[32:40], "little")
    size, count = int.from_bytes(data[54:56], "little"), int.from_bytes(data[56:58], "little")
    return any(int.from_bytes(data[phoff + i * size: phoff + i * size + 4], "little") == 3 for i in range(count))


def claude_binary() -> Path:
    """Claude Code's native binary, as ``agentproxy install-agents claude`` finds or installs it."""
    out = _run([sys.executable, "-m", "agentproxy", "install-agents", "claude"]).strip().splitlines()
    return Path(out[-1]).resolve()  # node_modules/.bin/claude links to the platform package's binary


def _python_dir(rootfs: Path) -> str:
    """``python3.X`` of the distribution's Python unpacked into ``rootfs``."""
    pythons = sorted((rootfs / "usr/lib").glob("python3.[0-9]*"))
    if not pythons:
        raise SystemExit("[image] error: the python3 package unpacked no /usr/lib/python3.X")
    return pythons[-1].name


def _install_agentproxy(site: Path) -> None:
    # From the sources, without dependencies (the caller brings those it needs).
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--no-compile", "--target", str(site), str(ROOT)])
    shutil.rmtree(site / "bin", ignore_errors=True)


def runtime_distributions(root: str = "agentproxy") -> list[importlib.metadata.Distribution]:
    """What ``root`` needs at run time (its requirements and theirs, markers evaluated, no
    extras of its own), as installed in the environment running this script."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(r, ()) for r in importlib.metadata.distribution(root).requires or []]
    while todo:
        text, extras = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
            continue
        name = req.name.lower().replace("_", "-")
        if name in found:
            continue
        try:
            found[name] = dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"[image] error: {req.name}, which agentproxy needs, is not installed here") from None
        todo += [(r, tuple(req.extras)) for r in dist.requires or []]
    return [found[n] for n in sorted(found)]


def _copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    """The files an installed distribution recorded, inside site-packages (no scripts, no bytecode)."""
    for rel in dist.files or []:
        if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(str(dist.locate_file(rel)), target)


def _compile(*dirs: Path) -> None:
    """Bytecode that is used whatever the files' times are (the layer fixes them all)."""
    for d in dirs:
        compileall.compile_dir(str(d), quiet=2, workers=1,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


# --- images ------------------------------------------------------------------------

def _finish(kind: str, key: str, rootfs: Path, config: dict, ref: str, owners=None,
            below: tuple[tuple[Path, str, str, int], ...] = ()) -> Path:
    """Write the image of ``rootfs`` (on top of the layers ``below``, when given)."""
    out = images_dir() / f"{kind}-{key}.oci.tar"
    layer = rootfs.parent / "layer.tar.gz"
    diff_id, digest, size = oci.write_layer(rootfs, layer, owners)
    oci.write_layered_archive(out, [*below, (layer, diff_id, digest, size)], config, ref)
    for old in images_dir().glob(f"{kind}-*.oci.tar"):
        if old != out:
            old.unlink(missing_ok=True)
    _log(f"{kind}: {out} ({out.stat().st_size // 1024} KiB)")
    return out


def _cached(kind: str, key: str) -> Path | None:
    path = images_dir() / f"{kind}-{key}.oci.tar"
    return path if path.exists() else None


def claude_layer(claude: Path, claude_id: str) -> tuple[Path, str, str, int]:
    """A layer holding only ``usr/local/bin/claude``, compressed once per version and kept in the
    cache: compressing 370 MB takes minutes on a busy machine, and agentproxy's own files change
    far more often. It is the image's bottom layer, so that containerd keeps its unpacked copy
    from one import to the next."""
    key = _digest(Path(oci.__file__), claude_id)
    layer = images_dir() / f"layer-claude-{key}.tar.gz"
    meta = layer.with_name(layer.name + ".json")
    if layer.exists() and meta.exists():
        diff_id, digest, size = json.loads(meta.read_text())
        return layer, diff_id, digest, size
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(claude, rootfs / "usr/local/bin/claude")
        partial = Path(tmp) / "layer.tar.gz"
        diff_id, digest, size = oci.write_layer(rootfs, partial)
        partial.replace(layer)
    meta.write_text(json.dumps([diff_id, digest, size]))  # written last: a layer without it is rebuilt
    for old in images_dir().glob("layer-claude-*"):
        if not old.name.startswith(layer.name):
            old.unlink(missing_ok=True)
    return layer, diff_id, digest, size


def build_agent() -> Path:
    """The agent image (see the module docstring)."""
    debs = download(package_closure(AGENT_PACKAGES + CLAUDE_PACKAGES))
    agentapi = agentapi_binary()
    claude = claude_binary()
    # The binary by its version and size rather than its 370 MB: the cache entry is pinned.
    claude_id = f"claude {_run([str(claude), '--version']).strip()} {claude.stat().st_size}"
    key = _digest(Path(__file__), Path(oci.__file__), *(d.name for d in debs), agentapi, claude_id, *_sources())
    if (hit := _cached("agent", key)) is not None:
        return hit
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        unpack(debs, rootfs)
        bindir = rootfs / "usr/local/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(agentapi, bindir / "agentapi")
        if not (rootfs / "bin/sh").exists():  # without dash, sh is bash
            (rootfs / "bin/sh").symlink_to("bash")
        site = rootfs / "usr/local/lib" / _python_dir(rootfs) / "dist-packages"
        # The echo demo agent needs the standard library only; agentproxy's own
        # dependencies (the service's) stay out, as in the Dockerfile.
        _install_agentproxy(site)
        etc = rootfs / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text(f"root:x:0:0:root:/root:/bin/sh\n"
                                    f"agent:x:{AGENT_UID}:{AGENT_UID}::/home/agent:/bin/sh\n")
        (etc / "group").write_text(f"root:x:0:\nagent:x:{AGENT_UID}:\n")
        (rootfs / "home/agent/work").mkdir(parents=True)
        (rootfs / "tmp").mkdir(exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        config = {
            "User": f"{AGENT_UID}:{AGENT_UID}", "WorkingDir": "/home/agent/work", "Entrypoint": ["agentapi"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "ExposedPorts": {"3284/tcp": {}},
        }
        return _finish("agent", key, rootfs, config, AGENT_REF, owners={"home/agent": AGENT_UID},
                       below=(claude_layer(claude, claude_id),))


def build_proxy() -> Path:
    """The proxy image (see the module docstring)."""
    debs = download(package_closure(AGENT_PACKAGES))
    dists = runtime_distributions()
    key = _digest(Path(__file__), Path(oci.__file__), *(d.name for d in debs), *_sources(),
                  *(f"{d.metadata['Name']}=={d.version}" for d in dists))
    if (hit := _cached("proxy", key)) is not None:
        return hit
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        unpack(debs, rootfs)
        python = _python_dir(rootfs)
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        if python != here:
            # Compiled extensions of the dependencies are copied from this environment.
            raise SystemExit(f"[image] error: the image's Python is {python}, this environment's {here}; "
                             f"build the proxy image with {python}")
        site = rootfs / "usr/local/lib" / python / "dist-packages"
        _install_agentproxy(site)
        for dist in dists:
            _copy_distribution(dist, site)
        _compile(rootfs / "usr/lib" / python, site)
        etc = rootfs / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text(f"root:x:0:0:root:/root:/bin/sh\n"
                                    f"agentproxy:x:{PROXY_UID}:{PROXY_UID}::/home/agentproxy:/usr/sbin/nologin\n")
        (etc / "group").write_text(f"root:x:0:\nagentproxy:x:{PROXY_UID}:\n")
        (rootfs / "home/agentproxy").mkdir(parents=True)
        (rootfs / "tmp").mkdir(exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        config = {
            "User": f"{PROXY_UID}:{PROXY_UID}", "WorkingDir": "/home/agentproxy",
            "Entrypoint": ["python3", "-m", "agentproxy"], "Cmd": ["serve"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1",
                    "PYTHONDONTWRITEBYTECODE=1"],
            "ExposedPorts": {"8080/tcp": {}},
        }
        return _finish("proxy", key, rootfs, config, PROXY_REF, owners={"home/agentproxy": PROXY_UID})


def build_pause() -> Path:
    """The sandbox image: a static program that waits for SIGTERM."""
    source = HERE / "pause" / "pause.go"
    key = _digest(Path(__file__), Path(oci.__file__), source, _run(["go", "version"]))
    if (hit := _cached("pause", key)) is not None:
        return hit
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        env = {**os.environ, "CGO_ENABLED": "0", "GO111MODULE": "off"}
        _run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(rootfs / "pause"), str(source)], env=env)
        config = {"User": "65535:65535", "Entrypoint": ["/pause"]}
        return _finish("pause", key, rootfs, config, PAUSE_REF)


def build_helper() -> Path:
    """busybox, for local-path-provisioner's helper pods."""
    debs = download(["busybox-static"])
    key = _digest(Path(__file__), Path(oci.__file__), *(d.name for d in debs))
    if (hit := _cached("helper", key)) is not None:
        return hit
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        unpack(debs, rootfs)
        busybox = rootfs / "bin" / "busybox"
        for applet in _run([str(busybox), "--list"]).split():
            if not (rootfs / "bin" / applet).exists():
                (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "tmp").mkdir(exist_ok=True)
        config = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
        return _finish("helper", key, rootfs, config, HELPER_REF)


BUILDERS = {"agent": build_agent, "proxy": build_proxy, "pause": build_pause, "helper": build_helper}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(BUILDERS))
    args = parser.parse_args()
    print(BUILDERS[args.kind]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
