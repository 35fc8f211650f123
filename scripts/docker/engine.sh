#!/usr/bin/env bash
# Makes sure a Docker engine answers, and a compose tool is installed.
# Where none runs and we are root: installs Debian's docker.io, docker-compose
# and debootstrap (apt-get update first), then starts dockerd in the
# background, logging to the per-user cache. Exits non-zero with the reason
# when the engine cannot be had. Idempotent.
source "$(dirname "$0")/common.sh"

have_compose() {
  "$DOCKER" compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null
}

if "$DOCKER" info >/dev/null 2>&1 && have_compose && command -v debootstrap >/dev/null; then
  log "docker engine $("$DOCKER" version -f '{{.Server.Version}}') is up"
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  log "no Docker engine answers and installing one needs root; start dockerd yourself"
  exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
have_compose || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables ca-certificates >/dev/null
  DOCKER="$(command -v /usr/bin/docker || command -v docker)"
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
  mkdir -p "$CACHE_DIR"
  log "starting dockerd (log: $CACHE_DIR/dockerd.log)"
  setsid dockerd >"$CACHE_DIR/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! "$DOCKER" info >/dev/null 2>&1; then
    log "dockerd did not come up within 60 s:"
    tail -20 "$CACHE_DIR/dockerd.log" >&2
    exit 1
  fi
fi
log "docker engine $("$DOCKER" version -f '{{.Server.Version}}') is up"
