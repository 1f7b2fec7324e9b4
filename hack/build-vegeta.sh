#!/usr/bin/env bash
# Builds vegeta, the HTTP load generator of bench/serve_bench.py, from the Go module proxy into the
# cache outside the clone (keyed by version) and links it into .dev/bin. A second run builds nothing.
# A load generator in Go takes a fraction of the CPU a Python client takes per request, so on a
# small machine the servers being compared, not the client, decide the figures.
set -euo pipefail

VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-vegeta.lock"
flock "$build_lock"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$CACHE_ROOT/vegeta-$VEGETA_VERSION"

if [[ ! -x "$out/vegeta" ]]; then
  printf '[build-vegeta] building vegeta %s\n' "$VEGETA_VERSION" >&2
  mkdir -p "$out.tmp"
  CGO_ENABLED=0 GOBIN="$out.tmp" go install -trimpath -ldflags "-s -w" \
    "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
mkdir -p "$REPO_ROOT/.dev/bin"
ln -sfn "$out/vegeta" "$REPO_ROOT/.dev/bin/vegeta"
