"""Minimal calls to the test cluster's API server with the admin certificate
(standard library only, so that the cluster scripts need nothing but Python)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from .layout import Layout
from .pki import file_stem


def admin_context(layout: Layout) -> ssl.SSLContext:
    """TLS with the cluster's CA and the admin client certificate."""
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return ctx


def insecure_context() -> ssl.SSLContext:
    """For liveness checks of components that serve self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def api(layout: Layout, method: str, path: str, body: dict | None = None,
        content_type: str = "application/json") -> tuple[int, dict]:
    """One API call; (status, JSON body). Status 0 when the server cannot be reached."""
    req = urllib.request.Request(layout.apiserver_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, context=admin_context(layout), timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, urllib.error.URLError):
        return 0, {}


def create(layout: Layout, path: str, body: dict) -> None:
    """Create an object; one that exists already is fine."""
    status, reply = api(layout, "POST", path, body)
    if status not in (200, 201, 409):
        raise SystemExit(f"[cluster] error: creating {body['kind']} failed ({status}): {reply.get('message')}")


def node_ready(layout: Layout, name: str) -> bool:
    """Whether Node ``name`` reports Ready."""
    status, node = api(layout, "GET", f"/api/v1/nodes/{name}")
    conditions = node.get("status", {}).get("conditions", []) if status == 200 else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def kubeconfig_text(layout: Layout, user: str) -> str:
    """A kubeconfig for ``user``'s client certificate."""
    return client_kubeconfig(layout.apiserver_url, layout.pki, user)


def client_kubeconfig(server: str, pki: Path, user: str) -> str:
    """A kubeconfig for the API server at ``server`` with ``user``'s client certificate, as
    :func:`~testenv.pki.write_pki` wrote it into ``pki`` with its CA."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: agentproxy-test
  cluster:
    server: {server}
    certificate-authority: {pki / 'ca.crt'}
users:
- name: {user}
  user:
    client-certificate: {pki / f'{file_stem(user)}.crt'}
    client-key: {pki / f'{file_stem(user)}.key'}
contexts:
- name: agentproxy-test
  context: {{cluster: agentproxy-test, user: {user}}}
current-context: agentproxy-test
"""
