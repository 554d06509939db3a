"""A pod's agentapi container, run as a local process where kwok runs no containers.

kwok marks pods Ready without running anything. To exercise the data path and
what the templates put into the container anyway, :class:`ContainerStandIn`
starts the real agentapi with the container's own command, arguments,
environment (``env``, the ConfigMaps and Secrets of ``envFrom``, the Secret keys
of ``secretKeyRef``; a path under a volume's mount mapped as the mount is) and
working directory, read from the Pod, its ConfigMap and Secret in the cluster,
with each volume mount mapped to a local directory named after its claim: a
recreated pod of the same StatefulSet gets the same directory back, as it gets
the same PVC. The ServiceAccount tokens of a projected volume are requested
bound to the pod and written there, as the kubelet does, and so are the keys of a
Secret volume. A launcher that listens on every address of its pod listens on the
pod's IP. agentapi listens on the port of its arguments; with loopback pod IPs the
proxy's route to ``podIP:3284`` reaches it. The image's programs are this machine's: ``python3``
is the test's Python (with agentproxy), ``agentapi`` and ``claude`` are found on
``PATH`` or in the cache (``bin/just agentapi agents``).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kr8s.asyncio

from agentproxy.agentapi import locate
from agentproxy.agentprograms import cached_program

from .kube import get, request


def _image_path() -> str:
    """PATH of the stand-in's "image": the test's Python first, then agentapi and Claude Code
    (where the cache keeps them), then the machine's PATH."""
    dirs = [os.path.dirname(sys.executable)]
    for program in (locate(), cached_program("claude")):
        if program:
            dirs.append(os.path.dirname(program))
    return os.pathsep.join([*dirs, os.environ.get("PATH", os.defpath)])


async def _secret(api: kr8s.asyncio.Api, namespace: str, name: str) -> dict[str, str]:
    secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/{name}")
    assert secret is not None, f"Secret {name} does not exist"
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


async def _project_tokens(api: kr8s.asyncio.Api, pod: dict[str, Any], volume: dict[str, Any], local: Path) -> None:
    """Write the ServiceAccount tokens of a projected volume as the kubelet does: a TokenRequest
    for the pod's ServiceAccount, with the source's audience and life, bound to the pod."""
    for source in (volume.get("projected") or {}).get("sources", []):
        wanted = source.get("serviceAccountToken")
        if wanted is None:
            continue
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        _, answer = await request(api, "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
                                  body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                                      "audiences": [wanted["audience"]] if wanted.get("audience") else None,
                                      "expirationSeconds": wanted.get("expirationSeconds", 3600),
                                      "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                                         "uid": meta["uid"]}}})
        local.mkdir(parents=True, exist_ok=True)
        (local / wanted["path"]).write_text(answer["status"]["token"])


async def _secret_files(api: kr8s.asyncio.Api, namespace: str, volume: dict[str, Any], local: Path) -> None:
    """Write the keys of a Secret volume as the kubelet does (none when an optional Secret is missing)."""
    source = volume.get("secret")
    if source is None:
        return
    secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/{source['secretName']}")
    assert secret is not None or source.get("optional"), f"Secret {source['secretName']} of a volume does not exist"
    data = (secret or {}).get("data") or {}
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    local.mkdir(parents=True, exist_ok=True)
    for item in items:
        if item["key"] in data:
            (local / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))


class ContainerStandIn:
    """One run of a pod's first container on this machine."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.argv, self.env, self.cwd, self.log = argv, env, cwd, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_check: list[str] | None = None
        """The command of the container's exec startup probe (paths mapped), if it has one."""

    @classmethod
    async def of_pod(cls, api: kr8s.asyncio.Api, namespace: str, pod_name: str, volumes_dir: Path) -> ContainerStandIn:
        """The stand-in of ``pod_name``'s container, its volumes under ``volumes_dir``."""
        pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
        assert pod is not None, f"pod {pod_name} does not exist"
        container = pod["spec"]["containers"][0]
        # A claim's directory is named after the claim (a recreated pod finds its data again);
        # any other volume's after the pod and the volume.
        claims = {v["name"]: (v["persistentVolumeClaim"]["claimName"] if "persistentVolumeClaim" in v
                              else f"{pod_name}-{v['name']}") for v in pod["spec"].get("volumes", [])}
        mounts = {m["mountPath"]: volumes_dir / claims[m["name"]] for m in container.get("volumeMounts", [])}
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        for volume in pod["spec"].get("volumes", []):
            await _project_tokens(api, pod, volume, volumes_dir / claims[volume["name"]])
            await _secret_files(api, namespace, volume, volumes_dir / claims[volume["name"]])

        def local_path(value: str) -> str:
            for mount_path, local in mounts.items():
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    return str(local) + value[len(mount_path.rstrip("/")):]
            return value

        env = {"PATH": _image_path()}
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(await _secret(api, namespace, source["secretRef"]["name"]))
                continue
            ref = source.get("configMapRef")
            assert ref is not None, f"the stand-in reads only ConfigMaps and Secrets, not {source}"
            configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/{ref['name']}")
            assert configmap is not None, f"ConfigMap {ref['name']} of envFrom does not exist"
            env.update({key: local_path(value) for key, value in (configmap.get("data") or {}).items()})
        for variable in container.get("env", []):
            ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                values = await _secret(api, namespace, ref["name"])
                assert ref["key"] in values, f"Secret {ref['name']} has no key {ref['key']}"
                env[variable["name"]] = values[ref["key"]]
                continue
            assert "value" in variable, f"the stand-in takes literal values and Secret keys only, not {variable}"
            env[variable["name"]] = local_path(variable["value"])
        command: list[str] = [*container.get("command", []), *container.get("args", [])]
        program, rest = command[0], command[1:]
        binary = {"agentapi": locate(), "python3": sys.executable}.get(program, program)
        assert binary, "agentapi is not installed: run `bin/just agentapi`"
        argv = [binary, *(local_path(arg) for arg in rest)]
        # A pod's "every address" is its own IP: a warm pool member's launcher listens there for
        # its binding (several stand-ins share this machine's loopback).
        for i, arg in enumerate(argv[:-1]):
            if arg == "--bind" and argv[i + 1].startswith("0.0.0.0:"):
                argv[i + 1] = f"{pod['status']['podIP']}:{argv[i + 1].rpartition(':')[2]}"
        cwd = Path(local_path(container.get("workingDir", str(volumes_dir))))
        standin = cls(argv, env, cwd, volumes_dir / f"{pod_name}-{pod['metadata']['uid'][:8]}.log")
        startup = ((container.get("startupProbe") or {}).get("exec") or {}).get("command")
        standin.startup_check = [local_path(arg) for arg in startup] if startup else None
        return standin

    def startup_probe_passes(self) -> bool:
        """Run the container's exec startup probe once, as the kubelet would (in the container's
        working directory and environment, paths mapped to the local volumes)."""
        assert self.startup_check, "the container has no exec startup probe"
        done = subprocess.run(self.startup_check, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60)
        return done.returncode == 0

    def start(self) -> ContainerStandIn:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, as the kubelet stops a container (agentapi saves its state), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> ContainerStandIn:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
