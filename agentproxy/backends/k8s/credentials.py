"""Where the proxy's Kubernetes credentials come from, without loading the client.

A kubeconfig (``k8s_mode.kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``)
when there is one; else, in a pod, the ServiceAccount token and CA that
Kubernetes mounts. That token is bound: it expires (an hour by default), and
the kubelet writes a fresh one into the same file well before (at 80 % of its
life). :class:`TokenFile` reads it again at most every
:data:`TOKEN_RELOAD_PERIOD` seconds, as client-go does, and on demand.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a pod's ServiceAccount token, CA and namespace."""
TOKEN_RELOAD_PERIOD = 60.0
"""Seconds a token read from the ServiceAccount's file is used before it is read again."""


def kubeconfig_present(kubeconfig: str | None = None) -> bool:
    """Whether a kubeconfig file is there to be used: ``kubeconfig``, a file of
    ``$KUBECONFIG``, or ``~/.kube/config`` (kr8s's order)."""
    if kubeconfig:
        return True
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep) if os.environ.get("KUBECONFIG") else ["~/.kube/config"]
    return any(p and Path(p).expanduser().is_file() for p in paths)


def service_account_dir(kubeconfig: str | None = None, directory: str = SERVICE_ACCOUNT_DIR) -> Path | None:
    """The mounted ServiceAccount to use: in a pod (``$KUBERNETES_SERVICE_HOST``), when no
    kubeconfig is there to be used. None otherwise."""
    if kubeconfig_present(kubeconfig) or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    path = Path(directory)
    return path if (path / "token").is_file() else None


class TokenFile:
    """A bound ServiceAccount token that the kubelet keeps current in a file: read again
    when it is older than ``period`` seconds, or when :meth:`reload` is asked to."""

    def __init__(self, path: Path, period: float = TOKEN_RELOAD_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.period = period
        self._clock = clock
        self._token = ""
        self._read_at = float("-inf")
        self.reload()

    def reload(self) -> bool:
        """Read the file now; True when the token changed. A file that cannot be read
        keeps the token there was (the kubelet replaces it atomically)."""
        self._read_at = self._clock()  # a failed read too: tried again after the period
        try:
            token = self.path.read_text().strip()
        except OSError as exc:
            log.warning("cannot read the ServiceAccount token %s: %s", self.path, exc)
            return False
        changed, self._token = token != self._token, token
        if changed and token:
            log.info("ServiceAccount token read from %s", self.path)
        return changed

    def header(self) -> dict[str, str]:
        """The ``Authorization`` header, from a token at most ``period`` seconds old."""
        if self._clock() - self._read_at >= self.period:
            self.reload()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}
