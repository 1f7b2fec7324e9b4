#!/usr/bin/env bash
# Builds the images the local cluster runs, without Docker and without a registry:
#   - optimodel-operator, optimodel-optimizer, optimodel-serve: images/Dockerfile built by buildah on
#     a Debian bookworm base made here by mmdebstrap (bookworm's python3 is 3.11, as the project's);
#   - the pause image (upstream pause.c from the Kubernetes module, linked statically), CoreDNS and
#     the object store versitygw (the binaries hack/build-node.sh built), each alone in an image from
#     scratch.
# Each image is saved as a docker-archive under the cache (outside the clone) and linked into
# .dev/images/, where the node imports them from; .dev/images.yaml holds the chart values naming
# the project's images. Tags carry the project version and a digest of every input, so a changed
# source gives a new tag and an unchanged one builds nothing. buildah keeps its layers (the base,
# the locked dependencies of each extra) in the cache, so a code change rebuilds only the last layer.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${OPTIMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optimodel}"
mkdir -p "$CACHE_ROOT"
# One build of these at a time on this machine: clones share the cache, and two builds of the same
# binaries at once would collide in it. Other builds (another script's) run beside this one.
exec {build_lock}>"$CACHE_ROOT/.build-images.lock"
flock "$build_lock"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
DEBIAN_SUITE=bookworm
ARCHIVES="$CACHE_ROOT/images"
LINK_DIR="$REPO_ROOT/.dev/images"
BUILDAH=(buildah --root "$CACHE_ROOT/buildah/storage" --runroot /run/optimodel-buildah --storage-driver overlay)

log() { printf '[build-images] %s\n' "$*" >&2; }

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# save NAME:TAG: the image as a docker-archive in the cache, linked into .dev/images.
save() {
  local ref="$1" file="$ARCHIVES/${1//[:\/]/_}.tar"
  if [[ ! -s "$file" ]]; then
    "${BUILDAH[@]}" push --quiet "$ref" "docker-archive:$file.tmp:$ref" >/dev/null
    mv "$file.tmp" "$file"
  fi
  touch "$file"  # its last use, which prune reads
  ln -sfn "$file" "$LINK_DIR/${1//[:\/]/_}.tar"
}

# from_scratch REF FILE ENTRYPOINT: an image holding one static binary and nothing else.
from_scratch() {
  local ref="$1" file="$2" entrypoint="$3" ctr
  image_exists "$ref" && return
  ctr="$("${BUILDAH[@]}" from scratch)"
  "${BUILDAH[@]}" copy --chmod 0755 "$ctr" "$file" "$entrypoint" >/dev/null
  "${BUILDAH[@]}" config --entrypoint "[\"$entrypoint\"]" --user 65532:65532 "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$ref" >/dev/null
}

build_pause() {
  local ref="localhost/optimodel-pause:$K8S_VERSION" src out="$CACHE_ROOT/pause-$K8S_VERSION"
  if ! image_exists "$ref"; then
    src="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
    mkdir -p "$out"
    gcc -Os -static -Wall -Werror -DVERSION="$K8S_VERSION" -o "$out/pause" "$src"
    strip "$out/pause"
    from_scratch "$ref" "$out/pause" /pause
  fi
  save "$ref"
}

build_coredns() {
  local ref="localhost/coredns:$COREDNS_VERSION"
  from_scratch "$ref" "$CACHE_ROOT/coredns-$COREDNS_VERSION/coredns" /coredns
  save "$ref"
}

build_versitygw() {
  local ref="localhost/versitygw:$VERSITYGW_VERSION"
  from_scratch "$ref" "$CACHE_ROOT/versitygw-$VERSITYGW_VERSION/versitygw" /versitygw
  save "$ref"
}

# The base of the project's images: Debian's python3 and venv, nothing else. Keyed by the suite
# and the package list, rebuilt only when they change.
base_image() {
  local packages="python3,python3-venv,ca-certificates"
  local key; key="$(printf '%s %s' "$DEBIAN_SUITE" "$packages" | sha256sum | cut -c1-12)"
  local ref="localhost/optimodel-python:$DEBIAN_SUITE-$key"
  if ! image_exists "$ref"; then
    log "making the $DEBIAN_SUITE base with mmdebstrap"
    local tar; tar="$(mktemp --suffix=.tar)"
    mmdebstrap --quiet --variant=minbase --include="$packages" \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' "$DEBIAN_SUITE" "$tar"
    local ctr; ctr="$("${BUILDAH[@]}" from scratch)"
    "${BUILDAH[@]}" add "$ctr" "$tar" / >/dev/null
    "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$ref" >/dev/null
    rm -f "$tar"
  fi
  echo "$ref"
}

# The digest of everything images/Dockerfile reads (its context filter names the same files).
source_digest() {
  cd "$REPO_ROOT"
  { echo images/Dockerfile; echo images/extra_requirements.py; echo pyproject.toml; echo requirements.lock; echo README.md
    find operator -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort; } |
    while read -r f; do printf '%s %s\n' "$f" "$(sha256sum < "$f" | cut -c1-64)"; done |
    sha256sum | cut -c1-12
}

# The build's RUN steps reach PyPI with this machine's trust settings (its CA bundle and pip
# configuration, where it has them), mounted for the build only: nothing of them is in a layer.
host_trust_volumes() {
  local f
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
    [[ -f "$f" ]] && printf -- '--volume=%s:%s:ro\n' "$f" "$f"
  done
  return 0
}

build_project_images() {
  local base version tag target
  base="$(base_image)"
  version="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
  tag="$version-$(source_digest)"
  for target in operator optimizer serve; do
    local ref="localhost/optimodel-$target:$tag"
    if ! image_exists "$ref"; then
      log "building $ref"
      # shellcheck disable=SC2046 # one option per line
      "${BUILDAH[@]}" bud --quiet --layers --isolation chroot --network host $(host_trust_volumes) \
        --build-arg "PYTHON_IMAGE=$base" --ignorefile images/Dockerfile.dockerignore -f images/Dockerfile --target "$target" -t "$ref" . >/dev/null
    fi
    save "$ref"
  done
  cat > "$REPO_ROOT/.dev/images.yaml" <<YAML
# Written by \`make images\`: the images it built and imported into the local node.
#   helm install optimodel charts/optimodel -f .dev/images.yaml
image:
  operator: {repository: localhost/optimodel-operator, tag: "$tag", pullPolicy: IfNotPresent}
  job: {repository: localhost/optimodel-optimizer, tag: "$tag"}
  serve: {repository: localhost/optimodel-serve, tag: "$tag"}
  workloadPullPolicy: IfNotPresent
YAML
}

# Archives and images of older builds go, except the three newest of each image and any a build
# used in the last $KEEP_HOURS hours: other clones on this machine (helpers, a CI run between its
# `make images` and its cluster tests) may still be about to import theirs.
KEEP_HOURS=6
prune() {
  local name old ref
  for name in optimodel-operator optimodel-optimizer optimodel-serve; do
    for old in $(ls -t "$ARCHIVES"/localhost_"$name"_*.tar 2>/dev/null | tail -n +4); do
      [[ -n "$(find "$old" -mmin "+$(( KEEP_HOURS * 60 ))")" ]] || continue
      ref="localhost/$name:$(basename "$old" .tar | sed "s/^localhost_${name}_//")"
      rm -f "$old"
      "${BUILDAH[@]}" rmi "$ref" >/dev/null 2>&1 || true
    done
  done
}

mkdir -p "$ARCHIVES" "$LINK_DIR"
cd "$REPO_ROOT"
started=$(date +%s)
# Archives of earlier builds stay in the cache, but only this build's are offered to the node.
rm -f "$LINK_DIR"/*.tar
build_pause
build_coredns
build_versitygw
build_project_images
prune
log "images ready in $LINK_DIR ($(( $(date +%s) - started )) s)"
