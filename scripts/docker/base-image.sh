#!/usr/bin/env bash
# Makes the local base image (default warmpath-base:bookworm) from a Debian
# minbase root filesystem, for hosts that cannot pull images from a registry.
# The mirror is the one this host's apt already uses. Cached twice: the image
# itself, and the rootfs tarball in the per-user cache (common.sh) (re-imported in seconds
# after the engine's storage is wiped). Pass --rebuild to start over.
source "$(dirname "$0")/common.sh"

if [[ "${1:-}" != "--rebuild" ]] && "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
  log "base image $BASE_TAG is cached"
  exit 0
fi

# Only what the services need at run time: Python with venv (the Dockerfile
# builds a virtual environment) and libgomp1 (llama.cpp's OpenMP runtime).
packages=python3,python3-venv,libgomp1,ca-certificates
tarball="$CACHE_DIR/base-$SUITE.tar"

if [[ "${1:-}" == "--rebuild" || ! -s "$tarball" ]]; then
  command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
  mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
    | awk -v suite="$SUITE" '$2 == suite { print $1; exit }')"
  if [[ -z "$mirror" ]]; then
    log "no apt source on this host serves '$SUITE'; set WARMPATH_BASE_SUITE or add one"
    exit 1
  fi
  mkdir -p "$CACHE_DIR"
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/warmpath-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase $SUITE from the host's apt mirror (a few minutes)"
  debootstrap --variant=minbase --include="$packages" "$SUITE" "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
  # Nothing at run time needs apt's lists, docs or caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi

log "importing $tarball as $BASE_TAG"
"$DOCKER" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tarball" "$BASE_TAG" >/dev/null
log "base image $BASE_TAG: $("$DOCKER" image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}')"
