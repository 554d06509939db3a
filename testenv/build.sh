#!/usr/bin/env bash
# Build the test control plane's binaries from the Go module proxy into a
# user-level cache (never into the repository), keyed by version:
#
#   $AGENTPROXY_CACHE/bin/kubernetes-vX.Y.Z/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $AGENTPROXY_CACHE/bin/etcd-vX.Y.Z/etcd
#   $AGENTPROXY_CACHE/bin/kwok-vX.Y.Z/kwok  (+ stages/ copied from the module)
#
# (agentapi, which every agent runs, is installed by `agentproxy install-agentapi`.)
#
# Idempotent: a component whose binaries are already in the cache is skipped.
# Usage: testenv/build.sh [kubernetes|etcd|kwok]...   (default: all)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${AGENTPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentproxy}"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is required (https://go.dev/dl/); none found on PATH"

# Each component is built into a temporary directory and renamed into place at
# the end, so an interrupted build never leaves a half-filled cache entry that
# a later run would mistake for a finished one.
finish() { # finish TMPDIR FINALDIR
  rm -rf "$2"
  mv "$1" "$2"
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kube-scheduler" && -x "$out/kubectl" ]]; then
    log "kubernetes $v: cached"; return
  fi
  log "kubernetes $v: building (cold builds take a long while on small machines)"
  local src="$cache/src/kubernetes-$v" tmp="$out.tmp"
  rm -rf "$src" "$tmp"; mkdir -p "$src" "$tmp"
  # k8s.io/kubernetes points its staging modules at ./staging with replace
  # directives, which `go install` refuses. A wrapper module pins each staging
  # module to its published v0.Y.Z twin instead. The list is read from the
  # release's own go.mod so that it follows the version.
  local gomod
  gomod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
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
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w \
    -X k8s.io/component-base/version.gitVersion=$v \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=$v \
    -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
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
  dir="$(cd /tmp && go mod download -json "sigs.k8s.io/kwok@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp -r "$dir/kustomize/stage/." "$tmp/stages/"
  chmod -R u+w "$tmp/stages"
  finish "$tmp" "$out"
  log "kwok $v: built into $out"
}

main() {
  mkdir -p "$cache/bin" "$cache/src"
  if [[ $# -eq 0 ]]; then
    build_etcd
    build_kwok
    build_kubernetes
    return
  fi
  for p in "$@"; do
    case "$p" in
      kubernetes|etcd|kwok) "build_$p" ;;
      *) die "unknown component '$p' (expected kubernetes, etcd or kwok)" ;;
    esac
  done
}

main "$@"
