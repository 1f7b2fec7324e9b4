#!/usr/bin/env bash
# Builds argocd-health (hack/argocd-health: Argo CD's Lua health-check runtime, gopher-lua with the
# libraries Argo CD opens) from the Go module proxy into the cache outside the clone, keyed by the
# gopher-lua version and a digest of the runner's source, and prints the binary's path. A second run
# builds nothing. tests/unit/test_argocd_health.py calls this when the binary is missing.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO_ROOT/hack/argocd-health"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-argocd-health.lock"
flock "$build_lock"
LUA_VERSION="$(awk '$1 == "require" && $2 == "github.com/yuin/gopher-lua" {print $3}' "$SRC/go.mod")"
DIGEST="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)"
out="$CACHE_ROOT/argocd-health-gopher-lua-$LUA_VERSION-$DIGEST"

if [[ ! -x "$out/argocd-health" ]]; then
  printf '[build-argocd-health] building with gopher-lua %s\n' "$LUA_VERSION" >&2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$out.tmp/argocd-health" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
printf '%s\n' "$out/argocd-health"
