#!/usr/bin/env bash
# Build the test control plane's binaries from the Go module proxy into a
# user-level cache (never into the repository), keyed by version:
#
#   $AGENTPROXY_CACHE/bin/kubernetes-vX.Y.Z/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $AGENTPROXY_CACHE/bin/etcd-vX.Y.Z/etcd
#   $AGENTPROXY_CACHE/bin/kwok-vX.Y.Z/kwok  (+ stages/ copied from the module)
#   $AGENTPROXY_CACHE/bin/kubelet-vX.Y.Z/kubelet                 (real node only)
#   $AGENTPROXY_CACHE/bin/kube-proxy-vX.Y.Z/kube-proxy           (real node only)
#   $AGENTPROXY_CACHE/bin/helm-vX.Y.Z/helm                       (deploy/'s chart tests)
#   $AGENTPROXY_CACHE/bin/local-path-provisioner-vX.Y.Z/local-path-provisioner  (real node only)
#   $AGENTPROXY_CACHE/bin/k8s-yaml-HASH/k8s-yaml                 (render's test: Kubernetes' YAML decoder)
#   $AGENTPROXY_CACHE/bin/oidc-provider-HASH/oidc-provider       (sign-in tests: a real OpenID provider)
#
# (agentapi, which every agent runs, is installed by `agentproxy install-agentapi`.)
#
# Idempotent: a component whose binaries are already in the cache is skipped.
# Usage: testenv/build.sh [kubernetes|etcd|kwok|kubelet|kube-proxy|local-path-provisioner|helm|k8s-yaml|oidc-provider]...
# (default: the control plane, plus the real node's parts when AGENTPROXY_REAL_NODE=1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${AGENTPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentproxy}"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go 1.24 or newer is required (https://go.dev/dl/): install it and put \`go\` on PATH"
command -v python3 >/dev/null || die "python3 is required (it reads \`go mod download -json\`): install Python 3.11 or newer"

# One build of a component at a time: checkouts beside each other share the cache, and
# a build starts by removing the temporary directories of an earlier, interrupted one.
# A failed build (Go's own message is above) ends with one line naming what to do.
locked() { # locked NAME FUNCTION
  (
    local name="$1"
    trap 'rc=$?; ((rc == 0)) || log "error: building $name failed (see above): Go needs the module proxy (GOPROXY) or a module cache holding every module; run this again once it is reachable"' EXIT
    exec 9>"$cache/bin/.$1.lock"
    if ! flock -n 9; then
      log "$1: waiting for another build of it (another checkout or command) to finish"
      flock 9
    fi
    "$2"
  )
}

# module_field FIELD MODULE@VERSION: a field of `go mod download -json` (in the current
# directory), or one line with Go's reason when the module cannot be downloaded.
module_field() {
  local out
  out="$(go mod download -json "$2" 2>/dev/null)" || true
  python3 -c '
import json, sys
field, module, text = sys.argv[1:]
try:
    info = json.loads(text)
except ValueError:
    info = {}
if info.get(field):
    print(info[field])
else:
    reason = info.get("Error") or "no answer"
    sys.exit("[build] error: go mod download " + module + " failed (" + reason + "); "
             "it needs the Go module proxy (see GOPROXY) or a module cache that has it")
' "$1" "$2" "$out"
}

# Each component is built into a temporary directory and renamed into place at
# the end, so an interrupted build never leaves a half-filled cache entry that
# a later run would mistake for a finished one.
finish() { # finish TMPDIR FINALDIR
  rm -rf "$2"
  mv "$1" "$2"
}

# k8s.io/kubernetes points its staging modules at ./staging with replace
# directives, which `go install` refuses. A wrapper module pins each staging
# module to its published v0.Y.Z twin instead. The list is read from the
# release's own go.mod so that it follows the version.
kubernetes_wrapper() { # kubernetes_wrapper SRCDIR VERSION
  local src="$1" v="$2" gomod
  gomod="$(cd "$src" && module_field GoMod "k8s.io/kubernetes@$v")"
  local staging_v="v0.${v#v1.}"
  {
    echo "module agentproxy.test/kubernetes-build"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    # Staging modules are required at exactly v0.0.0 (k8s.io/utils and
    # k8s.io/kube-openapi use pseudo-versions that merely start like it).
    awk -v sv="$staging_v" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print "replace " $1 " => " $1 " " sv}' "$gomod" | sort -u
  } >"$src/go.mod"
  log "kubernetes $v: $(grep -c '^replace' "$src/go.mod") staging modules pinned to $staging_v"
}

kubernetes_ldflags() { # kubernetes_ldflags VERSION
  local v="$1" minor="${1#v1.}"; minor="${minor%%.*}"
  echo "-s -w \
    -X k8s.io/component-base/version.gitVersion=$v \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=$v \
    -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kube-scheduler" && -x "$out/kubectl" ]]; then
    log "kubernetes $v: cached"; return
  fi
  log "kubernetes $v: building (cold builds take a long while on small machines)"
  local src="$cache/src/kubernetes-$v" tmp="$out.tmp"
  rm -rf "$src" "$tmp"; mkdir -p "$src" "$tmp"
  kubernetes_wrapper "$src" "$v"
  local ldflags
  ldflags="$(kubernetes_ldflags "$v")"
  (
    cd "$src"
    go mod download k8s.io/kubernetes
    # -mod=mod lets the build record the module graph it resolves in go.sum.
    go build -mod=mod -trimpath -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl
  )
  finish "$tmp" "$out"
  log "kubernetes $v: built into $out"
}

# The real node's kubelet: the same release, wrapper and flags as the control
# plane, in an entry of its own so that adding it never touches (or rebuilds)
# the control plane's entry.
build_kubelet() {
  local v="$KUBERNETES_VERSION" out="$cache/bin/kubelet-$KUBERNETES_VERSION"
  if [[ -x "$out/kubelet" ]]; then log "kubelet $v: cached"; return; fi
  log "kubelet $v: building"
  local src="$cache/src/kubelet-$v" tmp="$out.tmp"
  rm -rf "$src" "$tmp"; mkdir -p "$src" "$tmp"
  kubernetes_wrapper "$src" "$v"
  local ldflags
  ldflags="$(kubernetes_ldflags "$v")"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$tmp/kubelet" k8s.io/kubernetes/cmd/kubelet)
  finish "$tmp" "$out"
  log "kubelet $v: built into $out"
}

# The real node's kube-proxy: Service cluster IPs route from its pods (the
# in-cluster proxy reaches the API server through the `kubernetes` Service).
# Same release, wrapper and flags as the kubelet, in an entry of its own.
build_kube_proxy() {
  local v="$KUBERNETES_VERSION" out="$cache/bin/kube-proxy-$KUBERNETES_VERSION"
  if [[ -x "$out/kube-proxy" ]]; then log "kube-proxy $v: cached"; return; fi
  log "kube-proxy $v: building"
  local src="$cache/src/kube-proxy-$v" tmp="$out.tmp"
  rm -rf "$src" "$tmp"; mkdir -p "$src" "$tmp"
  kubernetes_wrapper "$src" "$v"
  local ldflags
  ldflags="$(kubernetes_ldflags "$v")"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$tmp/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy)
  finish "$tmp" "$out"
  log "kube-proxy $v: built into $out"
}

# helm, for the chart in deploy/helm (`helm template` is compared with kustomize's output).
build_helm() {
  local v="$HELM_VERSION" out="$cache/bin/helm-$HELM_VERSION"
  if [[ -x "$out/helm" ]]; then log "helm $v: cached"; return; fi
  log "helm $v: building"
  local tmp="$out.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v" \
    "helm.sh/helm/v3/cmd/helm@$v"
  finish "$tmp" "$out"
  log "helm $v: built into $out"
}

# kind's default storage: rancher's local-path-provisioner, run outside the
# cluster by the real node (no replace directives, so `go install` works).
build_local_path_provisioner() {
  local v="$LOCAL_PATH_PROVISIONER_VERSION" out="$cache/bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION"
  if [[ -x "$out/local-path-provisioner" ]]; then log "local-path-provisioner $v: cached"; return; fi
  log "local-path-provisioner $v: building"
  local tmp="$out.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "github.com/rancher/local-path-provisioner@$v"
  finish "$tmp" "$out"
  log "local-path-provisioner $v: built into $out"
}

build_etcd() {
  local v="$ETCD_VERSION" out="$cache/bin/etcd-$ETCD_VERSION"
  if [[ -x "$out/etcd" ]]; then log "etcd $v: cached"; return; fi
  log "etcd $v: building"
  # A separate wrapper module, so that etcd's requirements never move the
  # versions the Kubernetes build selects.
  local src="$cache/src/etcd-$v" tmp="$out.tmp"
  rm -rf "$src" "$tmp"; mkdir -p "$src" "$tmp"
  printf 'module agentproxy.test/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$v" >"$src/go.mod"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  finish "$tmp" "$out"
  log "etcd $v: built into $out"
}

build_kwok() {
  local v="$KWOK_VERSION" out="$cache/bin/kwok-$KWOK_VERSION"
  if [[ -x "$out/kwok" && -d "$out/stages" ]]; then log "kwok $v: cached"; return; fi
  log "kwok $v: building"
  local tmp="$out.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp/stages"
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  # The standalone kwok binary has no built-in stages; take the upstream
  # defaults from the same module version rather than keeping a copy.
  local dir
  dir="$(cd /tmp && module_field Dir "sigs.k8s.io/kwok@$v")"
  cp -r "$dir/kustomize/stage/." "$tmp/stages/"
  chmod -R u+w "$tmp/stages"
  finish "$tmp" "$out"
  log "kwok $v: built into $out"
}

# k8s-yaml (testenv/k8s-yaml): YAML on stdin to JSON through sigs.k8s.io/yaml, the decoder
# kubectl and the API machinery use; render's tests check that every string reads back as
# itself. Keyed by a hash of its sources (go.mod, go.sum, main.go), as the test finds it.
build_k8s_yaml() {
  local dir="$here/k8s-yaml" hash out tmp
  hash="$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" | sha256sum | cut -c1-16)"
  out="$cache/bin/k8s-yaml-$hash"
  if [[ -x "$out/k8s-yaml" ]]; then log "k8s-yaml $hash: cached"; return; fi
  log "k8s-yaml $hash: building"
  tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$dir" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/k8s-yaml" .)
  rm -rf "$out"; mv "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"  # another build that finished first is as good
  log "k8s-yaml $hash: built into $out"
}

# oidc-provider (testenv/oidc-provider): zitadel/oidc's example OpenID provider with users in
# groups and key rotation, for the sign-in tests. Keyed by a hash of its sources, like k8s-yaml.
build_oidc_provider() {
  local dir="$here/oidc-provider" hash out tmp
  hash="$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" | sha256sum | cut -c1-16)"
  out="$cache/bin/oidc-provider-$hash"
  if [[ -x "$out/oidc-provider" ]]; then log "oidc-provider $hash: cached"; return; fi
  log "oidc-provider $hash: building"
  tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd "$dir" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$tmp/oidc-provider" .)
  rm -rf "$out"; mv "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"  # another build that finished first is as good
  log "oidc-provider $hash: built into $out"
}

main() {
  mkdir -p "$cache/bin" "$cache/src"
  if [[ $# -eq 0 ]]; then
    locked etcd build_etcd
    locked kwok build_kwok
    locked kubernetes build_kubernetes
    # The real node's parts, only when it is asked for (AGENTPROXY_REAL_NODE=1).
    if [[ "${AGENTPROXY_REAL_NODE:-}" == 1 ]]; then
      locked kubelet build_kubelet
      locked kube-proxy build_kube_proxy
      locked local-path-provisioner build_local_path_provisioner
    fi
    return
  fi
  for p in "$@"; do
    case "$p" in
      kubernetes|etcd|kwok|kubelet|helm) locked "$p" "build_$p" ;;
      kube-proxy) locked kube-proxy build_kube_proxy ;;
      local-path-provisioner) locked local-path-provisioner build_local_path_provisioner ;;
      k8s-yaml) locked k8s-yaml build_k8s_yaml ;;
      oidc-provider) locked oidc-provider build_oidc_provider ;;
      *) die "unknown component '$p' (expected kubernetes, etcd, kwok, kubelet, kube-proxy, local-path-provisioner, helm, k8s-yaml or oidc-provider)" ;;
    esac
  done
}

main "$@"
