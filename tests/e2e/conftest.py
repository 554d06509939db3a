"""Fixtures of the e2e suite: a real Kubernetes API server named by $KUBECONFIG.

The suite runs unchanged against the local control plane (`just test`) and a
kind cluster (`just kind-up`, then `just e2e`). What differs between clusters
comes from fixtures fed by the environment, never from the tests:
``AGENTPROXY_TEST_POD_CIDR`` names the range pod IPs must come from, when known.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import kr8s.asyncio
import pytest

from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client

from .agents import settings_for
from .kube import fresh_namespace, required_kubeconfig
from .served import Servers

pytestmark = pytest.mark.e2e


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        # Not the contract suite's other backends, nor the real node's cleanup proof, which starts a cluster of its own
        # once the suite's is down (`bin/just test`).
        if Path(str(item.fspath)).resolve().is_relative_to(HERE) and not item.get_closest_marker("host_to_itself"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of the kubeconfig; fails (never skips) when `just e2e` requires a cluster."""
    return required_kubeconfig()


@pytest.fixture(scope="session")
def pod_cidr() -> ipaddress.IPv4Network | None:
    """The range pod IPs come from, when the cluster is known to use one."""
    value = os.environ.get("AGENTPROXY_TEST_POD_CIDR")
    return ipaddress.IPv4Network(value) if value else None


@pytest.fixture
async def api(kubeconfig: str) -> kr8s.asyncio.Api:
    """A kr8s client with the kubeconfig's (admin) credentials."""
    return await kr8s.asyncio.api(kubeconfig=kubeconfig)


@pytest.fixture
async def namespace(api: kr8s.asyncio.Api):
    """A fresh namespace enforcing the `restricted` Pod Security Standard,
    deleted after the test."""
    async with fresh_namespace(api) as name:
        yield name


@pytest.fixture
async def servers(kubeconfig, namespace, tmp_path):
    """Starts `agentproxy serve` processes in k8s mode for the test's namespace (see
    served.py); every one is stopped after the test, also when it fails."""
    started = Servers(kubeconfig, namespace, tmp_path)
    yield started
    await started.close()


@pytest.fixture
async def backend(api, namespace):
    """A started k8s backend for ``namespace`` that routes to pod IPs."""
    b = K8sBackend(settings_for(namespace), client=Client(api))
    await b.start()
    yield b
    await b.close()
