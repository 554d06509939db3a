"""The test environment: a real Kubernetes control plane on loopback, its opt-in real node, and
the tools the tests and benchmarks build, all without Docker.

Run its commands from the repository's root as modules (the justfile's recipes do):
``python -m testenv.cluster up|down|status|restart|load-image``, ``python -m testenv.image
agent|proxy|pause|helper``, ``python -m testenv.agentapi_proxy``.

Modules:

- :mod:`.cluster`: the control plane (etcd, kube-apiserver, controller-manager, scheduler,
  kwok) and the command line of the test cluster; :mod:`.layout`: where its binaries, state
  and ports are; :mod:`.pki`: its certificates; :mod:`.procs`: its processes, detached and
  recorded; :mod:`.apiclient`: minimal calls to its API server.
- :mod:`.realnode`: the real node (``AGENTPROXY_REAL_NODE=1``); :mod:`.nodeconfig`: its
  configuration, pure; :mod:`.host`: what it changes on the host, and undoing all of it;
  :mod:`.relay`: the byte relay that puts the API server on the node's address (run by path,
  as a process of its own).
- :mod:`.image` and :mod:`.oci`: images for the real node without Docker or a registry.
- :mod:`.agentapi_proxy`: building the Go agentapi-proxy for comparison.
- :mod:`.ports`: loopback ports for tests and benchmarks that name a port before anything
  listens on it, a range of its own for each pytest-xdist worker.

Beside them: ``build.sh`` (the control plane's binaries), ``package.sh`` (Debian's tools the
recipes need), ``k8s-yaml/`` (Kubernetes' YAML decoder for render's tests), ``kwok/``,
``pause/``, ``agentapi-proxy/``, ``oidc-provider/`` (a real OpenID provider for the sign-in
tests: zitadel/oidc's example provider with users in groups and key rotation) and ``versions.env``.
"""
