"""Where the test cluster's binaries, state and ports are, from the environment.

``AGENTPROXY_CACHE`` (binaries and images; default ``~/.cache/agentproxy``),
``AGENTPROXY_CLUSTER_DIR`` (state; default ``$AGENTPROXY_CACHE/cluster``),
``AGENTPROXY_CLUSTER_PORT_BASE`` (default 32300; ports base+0..base+9) and
``AGENTPROXY_REAL_NODE`` (``1``: add a real kubelet node to the cluster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

_PORT_OFFSETS = {"etcd": 0, "etcd-peer": 1, "apiserver": 2, "controller-manager": 3, "scheduler": 4, "kwok": 5,
                 "kubelet": 6, "kubelet-healthz": 7, "kube-proxy-healthz": 8, "kube-proxy-metrics": 9}
PORTS = len(_PORT_OFFSETS)
"""How many ports a cluster takes, from its port base on."""


def versions() -> dict[str, str]:
    """The pinned versions of ``versions.env``."""
    values = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def cache_dir() -> Path:
    """The user-level cache of binaries and images."""
    return Path(os.environ.get("AGENTPROXY_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentproxy")


def real_node_requested() -> bool:
    """Whether ``AGENTPROXY_REAL_NODE=1`` asks for a real node."""
    return os.environ.get("AGENTPROXY_REAL_NODE", "") == "1"


@dataclass(frozen=True)
class Layout:
    """Where binaries, state and ports are."""

    cache: Path
    state: Path
    port_base: int

    @classmethod
    def from_env(cls) -> Layout:
        cache = cache_dir()
        state = Path(os.environ.get("AGENTPROXY_CLUSTER_DIR") or cache / "cluster")
        return cls(cache, state.absolute(), int(os.environ.get("AGENTPROXY_CLUSTER_PORT_BASE", "32300")))

    def binary(self, component: str, name: str) -> Path:
        # The kubelet and kube-proxy are built from the same Kubernetes release as the control plane.
        key = "KUBERNETES" if component in ("kubelet", "kube-proxy") else component.upper().replace("-", "_")
        return self.cache / "bin" / f"{component}-{versions()[f'{key}_VERSION']}" / name

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def node(self) -> Path:
        """State of the real node (containerd, kubelet, volumes), inside the cluster's state."""
        return self.state / "node"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.port('apiserver')}"

    def port(self, name: str) -> int:
        return self.port_base + _PORT_OFFSETS[name]
