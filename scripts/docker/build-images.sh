#!/usr/bin/env bash
# Builds the router, backend-adapter and gpu-agent images from the host's
# wheelhouse. BASE_IMAGE defaults to the locally made Debian base (made first
# when missing); BASE_IMAGE=python:3.11-slim builds from the public image.
# Prints how long each step took.
source "$(dirname "$0")/common.sh"
base="${BASE_IMAGE:-$BASE_TAG}"
cd "$REPO_ROOT"

step() {
  local started=$SECONDS
  "$@"
  log "  ($((SECONDS - started)) s)"
}

if [[ "$base" == "$BASE_TAG" ]]; then
  step bash scripts/docker/base-image.sh
fi
step bash scripts/docker/wheelhouse.sh

mkdir -p "$CACHE_DIR"
# The classic builder: BuildKit would try to resolve a local base image in a
# registry, and none can be reached here.
build() {
  local target=$1 image="$IMAGE_PREFIX/$1:$IMAGE_TAG"
  log "building $image from $base"
  DOCKER_BUILDKIT=0 "$DOCKER" build --quiet \
    --build-arg BASE_IMAGE="$base" --target "$target" --tag "$image" . \
    >"$CACHE_DIR/build-$target.log" 2>&1 \
    || { tail -40 "$CACHE_DIR/build-$target.log" >&2; return 1; }
}
for target in router backend-adapter gpu-agent; do
  step build "$target"
done
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE_PREFIX/*" >&2
