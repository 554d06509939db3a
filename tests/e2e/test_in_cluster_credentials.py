"""In-cluster credentials: with no kubeconfig, the proxy uses the ServiceAccount token
and CA that Kubernetes mounts into its pod, and keeps working as that bound token
rotates: the token file is read again periodically (as client-go does) and at
once when the API server rejects the token it has, without cutting the watches
of its cache.

The mount is what the kubelet writes (token, ca.crt, namespace, the token file
replaced whole), in a directory of the test; the tokens are real bound tokens
from the TokenRequest API, each bound to a Secret whose deletion revokes it at
once (as a pod's deletion revokes the pod's token).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from agentproxy.backends.base import AgentStatus, Forbidden
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.credentials import service_account_dir
from agentproxy.spec import build_spec

from .accounts import ACCOUNT, apply_rbac, bound_token, cluster_of, mount, token_id, write_token
from .agents import SESSION, settings_for, until_status
from .kube import request, wait_for


async def _whoami(client: Client) -> dict:
    """The API server's view of the credentials a request carries (SelfSubjectReview)."""
    return await _whoami_with(client, None)


async def _whoami_with(client: Client, token: str | None) -> dict:
    review = await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, verb="create",
        resource="selfsubjectreviews", headers={"Authorization": f"Bearer {token}"} if token else None)
    return review["status"]["userInfo"]


@pytest.fixture
def in_a_pod(monkeypatch, tmp_path, kubeconfig):
    """The environment of a pod: the API server's Service variables, no kubeconfig anywhere."""
    server, ca_file = cluster_of(kubeconfig)
    url = urlsplit(server)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", url.hostname)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    return ca_file


async def test_the_mounted_service_account_is_used_and_its_rotation_followed(api, namespace, in_a_pod, tmp_path):
    settings = settings_for(namespace)
    await apply_rbac(api, settings)
    tokens = {name: await bound_token(api, namespace, name) for name in ("pod-a", "pod-b", "pod-c")}
    mounted = mount(tmp_path / "serviceaccount", tokens["pod-a"], in_a_pod, namespace)
    assert service_account_dir(directory=str(mounted)) == mounted

    client = await Client.connect(service_account=str(mounted), token_reload_period=1.0)
    assert client.token is not None
    user = await _whoami(client)
    assert user["username"] == f"system:serviceaccount:{namespace}:{ACCOUNT}"
    assert user["extra"]["authentication.kubernetes.io/credential-id"] == [token_id(tokens["pod-a"])]

    backend = K8sBackend(settings, client=client)
    await backend.start()
    try:
        await backend.create(build_spec(settings, SESSION, "steady"))
        await until_status(backend, "steady", AgentStatus.READY)
        relists = {name: r.relists for name, r in backend.cache.reflectors.items()}

        # The kubelet writes a fresh token long before the old one expires: read within the period.
        write_token(mounted, tokens["pod-b"])

        async def using(token):
            return (await _whoami(client))["extra"]["authentication.kubernetes.io/credential-id"] == [token_id(token)]
        await wait_for(lambda: using(tokens["pod-b"]), "the new token to be used", 10)

        # A token revoked before the file was read again: the 401 makes the client read it at once.
        client.token.period = 3600.0
        write_token(mounted, tokens["pod-c"])
        await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/secrets/pod-b")
        stale = Client(client.api)  # no token file: sends the token it is given, as kr8s alone would

        async def revoked():
            # The API server remembers a token it accepted for a few seconds.
            try:
                await _whoami_with(stale, tokens["pod-b"])
            except Forbidden as exc:
                return "rejected the proxy's credentials" in exc.message
            return False
        await wait_for(revoked, "the revoked token to be rejected", 30)
        await stale.close()
        assert await using(tokens["pod-c"])

        # The cache's watches, opened with the first token, went on all along.
        await backend.create(build_spec(settings, SESSION, "later"))
        await until_status(backend, "later", AgentStatus.READY)
        assert {name: r.relists for name, r in backend.cache.reflectors.items()} == relists
        assert await backend.healthy()
    finally:
        await backend.close()


async def test_a_kubeconfig_wins_over_the_mounted_service_account(in_a_pod, tmp_path, kubeconfig, monkeypatch):
    mounted = mount(tmp_path / "serviceaccount", "not-a-token", in_a_pod, "default")
    assert service_account_dir(directory=str(mounted)) == mounted
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    assert service_account_dir(directory=str(mounted)) is None
    client = await Client.connect(service_account=str(mounted))
    try:
        assert client.token is None and (await _whoami(client))["username"] == "admin"
    finally:
        await client.close()
