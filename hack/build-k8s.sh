#!/usr/bin/env bash
# Builds the pinned Kubernetes control-plane binaries, etcd and helm from the Go
# module proxy into a cache outside the clone, keyed by version, then links them
# into .dev/bin. A second run finds the cache and builds nothing.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-k8s.lock"
flock "$build_lock"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK_DIR="$REPO_ROOT/.dev/bin"

staging_version="v0.${K8S_VERSION#v1.}"
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_out="$CACHE_ROOT/kubernetes-$K8S_VERSION"
etcd_out="$CACHE_ROOT/etcd-$ETCD_VERSION"
helm_out="$CACHE_ROOT/helm-$HELM_VERSION"
export GOFLAGS="-mod=mod" CGO_ENABLED=0

log() { printf '[build-k8s] %s\n' "$*" >&2; }

# The cold build time of each component, read by bench/devcluster_bench.py.
record_seconds() { echo "$(( $(date +%s) - $2 ))" > "$1/build-seconds"; }

build_kubernetes() {
  if [[ -x "$k8s_out/kube-apiserver" && -x "$k8s_out/kubectl" && -x "$k8s_out/kubelet" && -x "$k8s_out/kube-proxy" ]]; then return; fi
  log "building Kubernetes $K8S_VERSION (cold: 15-30 minutes on 2 cores)"
  local t0; t0=$(date +%s)
  local work; work="$(mktemp -d)"
  (
    cd "$work"
    go mod init optimodel.local/k8sbuild >/dev/null 2>&1
    local gomod; gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    local staging
    staging="$(awk '/=> \.\/staging\/src\// {print $1}' "$gomod" | sort -u)"
    for mod in $staging; do
      go mod edit "-replace=$mod=$mod@$staging_version"
    done
    go mod edit "-require=k8s.io/kubernetes@$K8S_VERSION"
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
    go mod tidy -e >/dev/null
    local pkg=k8s.io/component-base/version
    local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
    mkdir -p "$k8s_out.tmp"
    go build -trimpath -ldflags "$ldflags" -o "$k8s_out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  )
  record_seconds "$k8s_out.tmp" "$t0"
  rm -rf "$k8s_out" && mv "$k8s_out.tmp" "$k8s_out"
  rm -rf "$work"
}

build_etcd() {
  if [[ -x "$etcd_out/etcd" ]]; then return; fi
  log "building etcd $ETCD_VERSION"
  local t0; t0=$(date +%s)
  local work; work="$(mktemp -d)"
  (
    cd "$work"
    go mod init optimodel.local/etcdbuild >/dev/null 2>&1
    local gomod; gomod="$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    for mod in $(awk '/=> \.\.\// {print $1}' "$gomod" | sort -u); do
      go mod edit "-replace=$mod=$mod@$ETCD_VERSION"
    done
    go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go mod tidy -e >/dev/null
    mkdir -p "$etcd_out.tmp"
    go build -trimpath -ldflags "-s -w" -o "$etcd_out.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  record_seconds "$etcd_out.tmp" "$t0"
  rm -rf "$etcd_out" && mv "$etcd_out.tmp" "$etcd_out"
  rm -rf "$work"
}

build_helm() {
  if [[ -x "$helm_out/helm" ]]; then return; fi
  log "building helm $HELM_VERSION"
  local t0; t0=$(date +%s)
  mkdir -p "$helm_out.tmp"
  GOBIN="$helm_out.tmp" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  record_seconds "$helm_out.tmp" "$t0"
  rm -rf "$helm_out" && mv "$helm_out.tmp" "$helm_out"
}

started=$(date +%s)
build_etcd
build_helm
build_kubernetes
mkdir -p "$LINK_DIR"
for bin in "$k8s_out"/kube* "$etcd_out/etcd" "$helm_out/helm"; do
  ln -sfn "$bin" "$LINK_DIR/$(basename "$bin")"
done
log "binaries ready in $LINK_DIR ($(( $(date +%s) - started )) s)"
