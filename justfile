# agentproxy's tasks. `bin/just RECIPE` installs everything needed on first use.

set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach commands as they were given ("$@"), spaces and quotes included.
set positional-arguments

cache := env_var_or_default("AGENTPROXY_CACHE", env_var_or_default("XDG_CACHE_HOME", env_var("HOME") / ".cache") / "agentproxy")
cluster_dir := env_var_or_default("AGENTPROXY_CLUSTER_DIR", cache / "cluster")
local_kubeconfig := cluster_dir / "kubeconfig"
kind_kubeconfig := cache / "kind" / "kubeconfig"
# Sources of agentapi to build from where the Go module proxy refuses `go install`
# (a .tar.gz or a directory); by default the archive beside this checkout, when present.
shared_agentapi_source := justfile_directory() / ".." / "shared" / "third_party" / "agentapi-0.12.1-src.tar.gz"
export AGENTPROXY_AGENTAPI_SOURCE := env_var_or_default("AGENTPROXY_AGENTAPI_SOURCE", if path_exists(shared_agentapi_source) == "true" { shared_agentapi_source } else { "" })

# List the recipes
default:
    @just --list

# Create .venv with agentproxy, its test tools and just (bin/just does this on first use)
setup:
    python3 -m venv .venv
    .venv/bin/python -m pip install -e '.[test]' rust-just

# Run the service (local mode on 127.0.0.1:8080 unless settings say otherwise)
run *ARGS: agentapi
    agentproxy serve "$@"

# Make sure agentapi v0.12.1 is on PATH or in the cache: `go install`, else build from sources
agentapi:
    agentproxy install-agentapi >/dev/null

# Make sure the agent programs (Claude Code 2.1.328) are on PATH or in the cache: `npm install` when needed
agents:
    agentproxy install-agents >/dev/null

# Build the Go agentapi-proxy v1.73.0 and its client into the cache (the compatibility tests compare against it)
agentapi-proxy:
    python -m testenv.agentapi_proxy >/dev/null

# Install configurable-http-proxy 5.3.0 (JupyterHub's proxy, Node) into the cache: the proxy benchmark's peer
chp:
    #!/usr/bin/env bash
    set -euo pipefail
    dir="{{ cache }}/configurable-http-proxy-5.3.0"
    [[ -x "$dir/node_modules/.bin/configurable-http-proxy" ]] && exit 0
    command -v npm >/dev/null || { echo "chp: npm is missing: install Node.js and npm to benchmark configurable-http-proxy" >&2; exit 0; }
    mkdir -p "{{ cache }}"
    work="$(mktemp -d "{{ cache }}/.configurable-http-proxy-5.3.0.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    if ! npm install --prefix "$work" --no-save --no-audit --no-fund --loglevel=error configurable-http-proxy@5.3.0 >/dev/null; then
      echo "chp: npm could not install configurable-http-proxy@5.3.0 (see above): it needs the npm registry (npm config get registry) to be reachable" >&2
      exit 1
    fi
    mv -T "$work" "$dir" 2>/dev/null || true  # another install that finished first is as good

# Make sure Debian's wrk (4.1) is installed: the proxy benchmark's load generator
wrk:
    testenv/package.sh wrk wrk "the proxy benchmark reports its load figures as missing"

# Make sure Debian's socat is installed: the proxy benchmark's byte relay in C, a floor for every proxy
socat:
    testenv/package.sh socat socat "the proxy benchmark reports that floor as missing"

# Make sure Debian's chromium is installed: the dashboard's tests drive it through Playwright
browser:
    testenv/package.sh chromium chromium

# Build the documentation site (docs/, mkdocs.yml) into site/ with MkDocs in strict mode: a link to a missing page
# or anchor fails. Arguments replace `build`, e.g. `just docs serve` (127.0.0.1:8000)
docs *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    [[ $# -gt 0 ]] || set -- build
    python -m mkdocs "$@" --strict

# Print the manifests of one agent, e.g. `just render --session s --agent a1`
render *ARGS:
    agentproxy render "$@"

# Everything CI runs: lint, unit tests, then the e2e suite against a local control plane
# (with AGENTPROXY_REAL_NODE=1, as in CI: plus a real node, its tests and the proof that it leaves nothing behind)
test: lint agentapi unit ui bench-smoke
    #!/usr/bin/env bash
    set -euo pipefail
    real="${AGENTPROXY_REAL_NODE:-}"
    # Leave a control plane that was already running as it was.
    started=0
    if ! python -m testenv.cluster status >/dev/null 2>&1; then
      just cluster-up
      started=1
    fi
    trap '[[ $started == 1 ]] && just cluster-down' EXIT
    [[ $real == 1 ]] && just agent-image proxy-image
    KUBECONFIG="{{ local_kubeconfig }}" AGENTPROXY_TEST_POD_CIDR=127.1.0.0/16 AGENTPROXY_TEST_LOCAL_CONTROL_PLANE=1 just e2e
    if [[ $real == 1 ]]; then
      if [[ $started == 1 ]]; then
        just cluster-down
        started=0
        python -m pytest tests/e2e/real_node/test_cleanup.py
      else
        echo "real node: the cleanup proof (tests/e2e/real_node/test_cleanup.py) needs the host to itself; it runs when this recipe starts the cluster" >&2
      fi
    fi

# Lint and types: ruff, then mypy over agentproxy/, tests/, testenv/, benchmarks/ and deploy/ (rules in pyproject.toml)
lint:
    ruff check --no-cache
    mypy

# Unit tests (pure code and local processes) and the contract suite against the memory and local backends; no cluster
# (the dashboard's browser tests run in a pytest process of their own: `ui`). The whole tier runs in 2 pytest-xdist
# workers, named files or tests in one process (AGENTPROXY_TEST_WORKERS=N: N workers, 0 one process): every port a
# test names comes from its worker's own range (testenv/ports.py); the compatibility tests' servers stay in one
# worker (xdist_group).
unit *ARGS: agentapi agents agentapi-proxy deploy-tools k8s-yaml oidc-provider
    #!/usr/bin/env bash
    set -euo pipefail
    paths=(tests/unit tests/contract)
    workers=2
    for arg in "$@"; do [[ $arg != -* && -e ${arg%%::*} ]] && paths=() && workers=0; done  # files or tests named: only those
    python -m pytest "${paths[@]}" -m "not e2e" --ignore=tests/unit/ui -n "${AGENTPROXY_TEST_WORKERS:-$workers}" --dist loadgroup "$@"

# The benchmarks' smoke tests (tests/bench_smoke: each benchmark once, tiny), in one process, after installing what
# the benchmarks compare against (the unit tier needs none of it); `test` runs them (CI: once, on the oldest Python)
bench-smoke *ARGS: agentapi agents agentapi-proxy chp wrk socat browser oidc-provider
    python -m pytest tests/bench_smoke "$@"

# The dashboard's tests in Chromium, in a pytest process of their own: after the asyncio tests of the
# unit tier in the same process, their agents' updates stopped reaching the page now and then
ui *ARGS: agentapi browser oidc-provider
    python -m pytest tests/unit/ui "$@"

# The e2e suite and the contract suite's k8s leg against whatever $KUBECONFIG points to (a missing cluster fails, it is never skipped)
e2e *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    kubeconfig="${KUBECONFIG:-}"
    if [[ ! -f "${kubeconfig%%:*}" ]]; then
      echo "e2e: no cluster: \$KUBECONFIG is unset or names no file; start one with \`bin/just cluster-up\` (or kind-up) and export the KUBECONFIG it prints" >&2
      exit 1
    fi
    paths=(tests/e2e tests/contract)
    for arg in "$@"; do [[ $arg != -* && -e ${arg%%::*} ]] && paths=(); done  # files or tests named: only those
    AGENTPROXY_E2E_REQUIRED=1 python -m pytest "${paths[@]}" -m e2e "$@"

# Build the control plane's binaries into the user-level cache (a no-op when cached)
build-testenv:
    testenv/build.sh

# Start etcd, kube-apiserver, controller-manager, scheduler and kwok on loopback
# (AGENTPROXY_REAL_NODE=1, root: plus a real node with containerd; see docs/real-node.md)
cluster-up: build-testenv
    python -m testenv.cluster up

# Stop the processes cluster-up started, remove its state and undo the real node's host changes
cluster-down:
    python -m testenv.cluster down

# Is the local control plane up (and its real node)?
cluster-status:
    python -m testenv.cluster status

# Build the agent image without Docker (an OCI archive in the cache) and import it into the real node
agent-image: agentapi
    #!/usr/bin/env bash
    set -euo pipefail
    archive=$(python -m testenv.image agent)
    python -m testenv.cluster load-image "$archive"

# Build the proxy image (what deploy/ runs) without Docker and import it into the real node
proxy-image:
    #!/usr/bin/env bash
    set -euo pipefail
    archive=$(python -m testenv.image proxy)
    python -m testenv.cluster load-image "$archive"

# Write deploy/'s files rendered from agentproxy's templates (the RBAC of the kustomize base and the Helm chart)
deploy-manifests:
    python deploy/generate.py

# Build the tiny Go decoder of render's tests (YAML to JSON through sigs.k8s.io/yaml, as Kubernetes reads manifests) into the cache
k8s-yaml:
    testenv/build.sh k8s-yaml

# Build the sign-in tests' OpenID provider (zitadel/oidc's example provider, testenv/oidc-provider) into the cache
oidc-provider:
    testenv/build.sh oidc-provider

# Build kubectl (its kustomize renders deploy/) and helm (the chart) into the cache (a no-op when cached)
deploy-tools:
    testenv/build.sh kubernetes helm

# For users with Docker: a kind cluster with the agent and proxy images loaded; then `KUBECONFIG=... just e2e`
kind-up: (kind-tools "kind-up")
    mkdir -p "$(dirname '{{ kind_kubeconfig }}')"
    kind create cluster --config kind-config.yaml --kubeconfig "{{ kind_kubeconfig }}" --wait 180s
    docker build -t agentapi-proxy:latest .
    docker build --target proxy -t agentproxy:latest .
    kind load docker-image agentapi-proxy:latest agentproxy:latest --name agentproxy
    @echo "export KUBECONFIG={{ kind_kubeconfig }}"

# Delete the kind cluster
kind-down: (kind-tools "kind-down")
    kind delete cluster --name agentproxy --kubeconfig "{{ kind_kubeconfig }}"

[private]
kind-tools RECIPE:
    #!/usr/bin/env bash
    for tool in kind docker; do
      command -v "$tool" >/dev/null || { echo "{{ RECIPE }}: $tool is missing: install kind (https://kind.sigs.k8s.io) and Docker, or use \`bin/just cluster-up\`, which needs neither" >&2; exit 1; }
    done

# Render manifests for 1000 agents and report agents/s
bench-render *ARGS:
    python -m benchmarks.render "$@"

# The k8s backend against $KUBECONFIG (creates and deletes its own namespaces)
bench-k8s *ARGS:
    python -m benchmarks.k8s "$@"

# Warm pools in k8s mode on $KUBECONFIG's kwok node: claim-to-ready against cold creates, API requests, refill
bench-pool-k8s *ARGS:
    python -m benchmarks.pool_k8s "$@"

# 10,000 agents (--agents N) through two proxy replicas on $KUBECONFIG's kwok node: lists, memory, idle CPU, restart, drift, the create floor
bench-scale *ARGS:
    python -m benchmarks.scale "$@"

# The CPU a call and a watch event cost the k8s client: kr8s's call_api (httpx) against its transport over aiohttp, on a local TLS server
bench-transport *ARGS:
    python -m benchmarks.transport "$@"

# The k8s read path with 10,000 agents (--agents N) in an imitation of the API server's lists: start, memory, lists in the process and over HTTP
bench-list-cache *ARGS:
    python -m benchmarks.list_cache "$@"

# GET /agents with 200 local echo agents (--agents N): JSON once per change against made on every read, memory per agent
bench-list-local *ARGS: agentapi
    python -m benchmarks.list_local "$@"

# 1,000 agents (--agents N), each with an /events stream through the proxy and a message every 3 s: events lost, added delay, RSS
bench-agent-streams *ARGS:
    python -m benchmarks.agent_streams "$@"

# agentproxy, configurable-http-proxy and the Go agentapi-proxy against direct agentapi, side by side
bench-proxy *ARGS: agentapi agentapi-proxy chp wrk socat
    python -m benchmarks.proxy "$@"

# The proxied path with an API key against an OpenID Connect bearer token (a real provider's), and the token check alone
bench-token-auth *ARGS: agentapi oidc-provider wrk
    python -m benchmarks.token_auth "$@"

# Sign-in to the first agent's answer in Chromium through the provider's login page: time, clicks and keys
bench-signin *ARGS: agentapi browser oidc-provider
    python -m benchmarks.signin "$@"

# Agents on the real node: create-to-ready of 20 at once, memory of the node's parts
bench-real-node *ARGS:
    python -m benchmarks.real_node "$@"

# Every benchmark, one table per area: render, k8s (when $KUBECONFIG is set), local, proxy, token checks, sign-in, suspend, first answer
bench: agentapi agents agentapi-proxy chp wrk socat browser oidc-provider
    #!/usr/bin/env bash
    set -euo pipefail
    echo "== render"; python -m benchmarks.render
    if [[ -n "${KUBECONFIG:-}" ]]; then echo; echo "== k8s"; python -m benchmarks.k8s
    else echo; echo "== k8s: skipped, no KUBECONFIG given (bin/just cluster-up prints one)"; fi
    echo; echo "== local"; python -m benchmarks.local
    echo; echo "== proxy"; python -m benchmarks.proxy
    echo; echo "== token checks"; python -m benchmarks.token_auth
    echo; echo "== sign-in"; python -m benchmarks.signin
    echo; echo "== suspend"; python -m benchmarks.suspend
    echo; echo "== restart"; python -m benchmarks.restart --agents 100
    echo; echo "== first answer"; python -m benchmarks.first_answer
    if [[ -n "${KUBECONFIG:-}" ]]; then python -m benchmarks.suspend --k8s; fi

# Warm pool claims against cold creates in local mode: claim-to-ready and -first-answer at 1 and 20 at once, refill
bench-pool *ARGS: agentapi
    python -m benchmarks.pool "$@"

# The local supervisor's overhead, memory per agent and concurrent starts
bench-local *ARGS:
    python -m benchmarks.local "$@"

# A restart of the proxy with N local agents: restart-to-/healthz and restart-to-all-ready (kill -9, same command)
bench-restart *ARGS: agentapi
    python -m benchmarks.restart {{ ARGS }}
# What a SIGKILL inside an agent's container loses: the launcher's saves against the answers (real agentapi, echo)
bench-save-lag *ARGS: agentapi
    python -m benchmarks.save_lag "$@"

# Create-to-first-answer of Claude Code against echo in local mode, with --real-node also on the real node (the tests' model stand-in)
bench-first-answer *ARGS: agentapi agents
    python -m benchmarks.first_answer "$@"

# Suspend and resume: resume-to-ready p50/p95 (local mode; with --k8s against $KUBECONFIG, also API requests)
bench-suspend *ARGS:
    python -m benchmarks.suspend "$@"
