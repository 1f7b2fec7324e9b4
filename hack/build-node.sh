#!/usr/bin/env bash
# Builds the parts of the local cluster's node that Kubernetes itself does not ship: containerd
# (with ctr and the runc shim), runc with seccomp, the CNI plugins, CoreDNS and the cluster's object
# store (Versity's S3 gateway), each from the Go
# module proxy at a pinned version, into the cache outside the clone (keyed by version), then links
# them into .dev/bin (.dev/cni/bin for the CNI plugins). kubelet and kube-proxy come from
# hack/build-k8s.sh, built with the control plane from the same release. A second run builds nothing.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.2.9}"
RUNC_VERSION="${RUNC_VERSION:-v1.3.7}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.9.1}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-node.lock"
flock "$build_lock"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK_DIR="$REPO_ROOT/.dev/bin"
CNI_LINK_DIR="$REPO_ROOT/.dev/cni/bin"
export GOFLAGS="-mod=mod"

log() { printf '[build-node] %s\n' "$*" >&2; }

# go_install NAME VERSION CGO TAGS PACKAGE... : `go install` each package into the cache folder
# NAME-VERSION, unless every binary is already there; the folder appears only when all are built.
go_install() {
  local name="$1" version="$2" cgo="$3" tags="$4"; shift 4
  local out="$CACHE_ROOT/$name-$version" pkg missing=0
  for pkg in "$@"; do [[ -x "$out/$(basename "${pkg%@*}")" ]] || missing=1; done
  if (( missing == 0 )); then return; fi
  log "building $name $version"
  local t0; t0=$(date +%s)
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  for pkg in "$@"; do
    CGO_ENABLED="$cgo" GOBIN="$out.tmp" go install -trimpath -tags "$tags" -ldflags "-s -w" "$pkg"
  done
  echo "$(( $(date +%s) - t0 ))" > "$out.tmp/build-seconds"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

containerd_ldflags() {
  # containerd reports its version from these variables (`containerd --version`, the CRI status).
  printf -- '-s -w -X github.com/containerd/containerd/v2/version.Version=%s' "$CONTAINERD_VERSION"
}

build_containerd() {
  local out="$CACHE_ROOT/containerd-$CONTAINERD_VERSION" bin
  if [[ -x "$out/containerd" && -x "$out/ctr" && -x "$out/containerd-shim-runc-v2" ]]; then return; fi
  log "building containerd $CONTAINERD_VERSION"
  local t0; t0=$(date +%s)
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  for bin in containerd ctr containerd-shim-runc-v2; do
    CGO_ENABLED=0 GOBIN="$out.tmp" go install -trimpath -tags "no_btrfs no_devmapper" \
      -ldflags "$(containerd_ldflags)" "github.com/containerd/containerd/v2/cmd/$bin@$CONTAINERD_VERSION"
  done
  echo "$(( $(date +%s) - t0 ))" > "$out.tmp/build-seconds"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

build_runc() {
  # runc needs cgo and libseccomp for the RuntimeDefault seccomp profile (apt: libseccomp-dev).
  go_install runc "$RUNC_VERSION" 1 seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
}

build_cni_plugins() {
  local base="github.com/containernetworking/plugins/plugins"
  go_install cni-plugins "$CNI_PLUGINS_VERSION" 0 "" \
    "$base/main/bridge@$CNI_PLUGINS_VERSION" "$base/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "$base/main/loopback@$CNI_PLUGINS_VERSION" "$base/meta/portmap@$CNI_PLUGINS_VERSION"
}

build_coredns() {
  go_install coredns "$COREDNS_VERSION" 0 "" "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_versitygw() {
  go_install versitygw "$VERSITYGW_VERSION" 0 "" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
}

started=$(date +%s)
build_runc
build_cni_plugins
build_containerd
build_coredns
build_versitygw
mkdir -p "$LINK_DIR" "$CNI_LINK_DIR"
for bin in "$CACHE_ROOT/containerd-$CONTAINERD_VERSION"/{containerd,ctr,containerd-shim-runc-v2} \
  "$CACHE_ROOT/runc-$RUNC_VERSION/runc" "$CACHE_ROOT/coredns-$COREDNS_VERSION/coredns" \
  "$CACHE_ROOT/versitygw-$VERSITYGW_VERSION/versitygw"; do
  ln -sfn "$bin" "$LINK_DIR/$(basename "$bin")"
done
for bin in bridge host-local loopback portmap; do
  ln -sfn "$CACHE_ROOT/cni-plugins-$CNI_PLUGINS_VERSION/$bin" "$CNI_LINK_DIR/$bin"
done
log "node binaries ready in $LINK_DIR ($(( $(date +%s) - started )) s)"
