#!/usr/bin/env bash
# Makes the tiny image the Docker driver's tests run as a "model server"
# (default warmpath-test/model-stub:1), with no image registry: a static
# busybox from Debian's busybox-static package plus a /www tree, imported
# with `docker import`. `busybox httpd` serves /www, so GET /v1/models answers
# 200 (the readiness path); SIGTERM stops it at once. About 1 MB.
# Cached: the image itself, and the busybox binary in the per-user cache
# (common.sh). The package is fetched with `apt-get download`, so nothing is
# installed on the host. Pass --rebuild to start over.
source "$(dirname "$0")/common.sh"

TAG="${WARMPATH_TEST_MODEL_IMAGE:-warmpath-test/model-stub:1}"
if [[ "${1:-}" != "--rebuild" ]] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  log "test model image $TAG is cached"
  exit 0
fi

busybox="$CACHE_DIR/busybox-static"
if [[ "${1:-}" == "--rebuild" || ! -x "$busybox" ]]; then
  mkdir -p "$CACHE_DIR"
  work="$(mktemp -d "${TMPDIR:-/tmp}/warmpath-busybox.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download busybox-static >/dev/null 2>&1); then
    [[ "$(id -u)" == 0 ]] || { log "cannot fetch busybox-static (apt-get download failed; try as root)"; exit 1; }
    log "refreshing apt's package lists to fetch busybox-static"
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download busybox-static >/dev/null) \
      || { log "apt-get download busybox-static failed"; exit 1; }
  fi
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/pkg"
  install -m 0755 "$work/pkg/bin/busybox" "$busybox.tmp" && mv "$busybox.tmp" "$busybox"
fi

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/warmpath-stub.XXXXXX")"
trap 'rm -rf "$rootfs" ${work:+"$work"}' EXIT
mkdir -p "$rootfs/bin" "$rootfs/www/v1" "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh httpd sleep cat echo; do ln -s busybox "$rootfs/bin/$applet"; done
printf '{"object":"list","data":[{"id":"stub","object":"model"}]}\n' >"$rootfs/www/v1/models"

log "importing the test model image $TAG"
# Stays in the foreground as PID 1's child; the trap makes SIGTERM a clean exit
# (PID 1 ignores signals it has no handler for).
tar -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV PATH=/bin' \
  --change 'EXPOSE 8080' \
  --change 'CMD ["/bin/sh", "-c", "trap \"exit 0\" TERM; httpd -f -p 8080 -h /www & wait"]' \
  - "$TAG" >/dev/null
log "test model image $TAG: $("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.1f MB", $1/1e6}')"
