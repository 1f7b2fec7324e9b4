#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller at the versions Flux v2.9.4 pins
# together, from the Go module proxy, into the cache outside the clone (keyed by version), with
# the CRDs each ships (its config/crd/bases, read from the module zip), then links the binaries into
# .dev/bin and the CRDs into .dev/flux/crds. The cluster tests run them as host processes
# (tests/cluster/flux_kit.py). A second run builds nothing.
#
# Their go.mod files replace their own `api` module with `./api`, so `go install` refuses them:
# each is built in a wrapper module that carries the same replace directives, with `./api` swapped
# for the published `api` tag of the same version.
set -euo pipefail

FLUX_SOURCE_VERSION="${FLUX_SOURCE_VERSION:-v1.9.4}"
FLUX_KUSTOMIZE_VERSION="${FLUX_KUSTOMIZE_VERSION:-v1.9.4}"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-flux.lock"
flock "$build_lock"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK_DIR="$REPO_ROOT/.dev/bin"
CRD_LINK_DIR="$REPO_ROOT/.dev/flux/crds"
export GOFLAGS="-mod=mod" CGO_ENABLED=0

log() { printf '[build-flux] %s\n' "$*" >&2; }

# build_controller NAME VERSION [MODULE=VERSION...]: builds github.com/fluxcd/NAME@VERSION into
# CACHE_ROOT/NAME-VERSION (the binary, build-seconds and crds/), unless it is already there; each
# MODULE=VERSION is replaced on top of the controller's own replace directives.
build_controller() {
  local name="$1" version="$2"; shift 2
  local module="github.com/fluxcd/$name" out="$CACHE_ROOT/$name-$version"
  if [[ -x "$out/$name" && -d "$out/crds" ]]; then return; fi
  log "building $name $version"
  local t0; t0=$(date +%s)
  local work; work="$(mktemp -d)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/crds"
  (
    cd "$work"
    go mod init "optimodel.local/${name//-/}build" >/dev/null 2>&1
    local info; info="$(go mod download -json "$module@$version")"
    local gomod dir
    gomod="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["GoMod"])' "$info")"
    dir="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["Dir"])' "$info")"
    # Each replace directive of the controller, as -replace flags; a local path (./api) becomes
    # the published module of the controller's own version.
    local flags
    flags="$(go mod edit -json "$gomod" | python3 -c '
import json, sys
version = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]
    if new["Path"].startswith("./"):
        print(f"-replace={old}={old}@{version}")
    else:
        print("-replace=" + old + "=" + new["Path"] + "@" + new["Version"])
' "$version")"
    # shellcheck disable=SC2086
    local extra; for extra in "$@"; do flags+=$'\n'"-replace=${extra%%=*}=${extra%%=*}@${extra#*=}"; done
    go mod edit $flags "-require=$module@$version"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$module" > tools.go
    go mod tidy -e >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$out.tmp/$name" "$module"
    cp "$dir"/config/crd/bases/*.yaml "$out.tmp/crds/"
    chmod u+w "$out.tmp"/crds/*.yaml
  )
  echo "$(( $(date +%s) - t0 ))" > "$out.tmp/build-seconds"
  rm -rf "$out" && mv "$out.tmp" "$out"
  rm -rf "$work"
}

started=$(date +%s)
# The module proxy serves the go.mod of github.com/fluxcd/pkg/artifact v0.18.2 (which source-controller
# v1.9.4 requires) but refuses its zip ("403 This module version is not available", seen 2026-12-05).
# The go.mod of v0.18.2 differs from v0.18.1's only by requiring fluxcd/pkg/oci v0.68.1 instead of
# v0.68.0, and source-controller requires oci v0.68.1 itself: with v0.18.1 the dependency graph is
# the same (the sources of v0.18.2 could not be compared here).
build_controller source-controller "$FLUX_SOURCE_VERSION" github.com/fluxcd/pkg/artifact=v0.18.1
build_controller kustomize-controller "$FLUX_KUSTOMIZE_VERSION"
mkdir -p "$LINK_DIR" "$CRD_LINK_DIR"
ln -sfn "$CACHE_ROOT/source-controller-$FLUX_SOURCE_VERSION/source-controller" "$LINK_DIR/source-controller"
ln -sfn "$CACHE_ROOT/kustomize-controller-$FLUX_KUSTOMIZE_VERSION/kustomize-controller" "$LINK_DIR/kustomize-controller"
for crd in "$CACHE_ROOT/source-controller-$FLUX_SOURCE_VERSION"/crds/*.yaml \
  "$CACHE_ROOT/kustomize-controller-$FLUX_KUSTOMIZE_VERSION"/crds/*.yaml; do
  ln -sfn "$crd" "$CRD_LINK_DIR/$(basename "$crd")"
done
log "Flux controllers ready in $LINK_DIR, CRDs in $CRD_LINK_DIR ($(( $(date +%s) - started )) s)"
