"""ServiceAccounts as a pod has them: the proxy's RBAC applied in a namespace, bound
tokens from the TokenRequest API, and the files Kubernetes mounts into a pod."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from agentproxy.render import render_rbac

from .kube import request, server_side_apply

ACCOUNT = "agentproxy"


def cluster_of(kubeconfig: str) -> tuple[str, str]:
    """(API server URL, CA file) of the kubeconfig's current context."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    return cluster["server"], cluster["certificate-authority"]


async def apply_rbac(api, settings, role: dict | None = None) -> None:
    """The ServiceAccount, Role and RoleBinding of ``agentproxy rbac`` (``role`` in place of its Role)."""
    for obj in render_rbac(settings, ACCOUNT):
        await server_side_apply(api, role if role is not None and obj["kind"] == "Role" else obj)


async def bound_token(api, namespace: str, secret: str) -> str:
    """A token of the ServiceAccount bound to a new Secret ``secret``: deleting the Secret
    revokes it at once, as deleting its pod revokes a pod's token."""
    _, created = await request(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}})
    _, answer = await request(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{ACCOUNT}/token", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600, "boundObjectRef": {
            "apiVersion": "v1", "kind": "Secret", "name": secret, "uid": created["metadata"]["uid"]}}})
    return answer["status"]["token"]


def token_id(token: str) -> str:
    """The JWT id of a ServiceAccount token, as the API server reports it (``JTI=...``)."""
    payload = token.split(".")[1]
    return "JTI=" + json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def write_token(directory: Path, token: str) -> None:
    """Replace the token file at once, as the kubelet does (never a half-written file)."""
    tmp = directory / ".token.tmp"
    tmp.write_text(token)
    tmp.replace(directory / "token")


def mount(directory: Path, token: str, ca_file: str, namespace: str) -> Path:
    """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    directory.mkdir(parents=True, exist_ok=True)
    write_token(directory, token)
    (directory / "ca.crt").write_bytes(Path(ca_file).read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def token_kubeconfig(path: Path, server: str, ca_file: str, token: str) -> Path:
    """A kubeconfig that authenticates with ``token``."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }))
    return path
