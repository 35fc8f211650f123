# Shared settings for scripts/docker/*.sh (sourced, not run).
# shellcheck shell=bash
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The wheelhouse the image builds install from lives in the build context
# (gitignored); the base image's rootfs tarball, tool venvs and logs live in a
# per-user cache that outlives clones of the repository.
CACHE_DIR="${WARMPATH_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warmpath-docker}"
WHEELHOUSE="$REPO_ROOT/deploy/wheelhouse"
SUITE="${WARMPATH_BASE_SUITE:-bookworm}"
BASE_TAG="${WARMPATH_BASE_IMAGE:-warmpath-base:$SUITE}"
IMAGE_PREFIX="${WARMPATH_IMAGE_PREFIX:-warmpath}"
IMAGE_TAG="${WARMPATH_IMAGE_TAG:-dev}"
# Prefer the engine's own client (Debian's docker.io) when both are installed.
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
