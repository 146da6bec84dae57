#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`.
#
#   scripts/docker/engine.sh
#
# Uses the running engine when there is one. Otherwise installs Debian's docker.io
# (and debootstrap, which base-image.sh needs) when dockerd is missing, then starts
# dockerd in the background with its log in $LCC_DOCKERD_LOG and waits for it.
# Exits 0 when an engine answers; otherwise prints the reason on stderr and exits 1
# (tests/container turns that into a skip, or a failure under LCC_REQUIRE_DOCKER=1).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if docker info >/dev/null 2>&1; then
    exit 0
fi

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null \
        || ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || die "no Docker engine and no apt-get to install docker.io"
    log "installing docker.io and debootstrap from Debian"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq || die "apt-get update failed (need root to install docker.io)"
    as_root apt-get install -y -qq --no-install-recommends docker.io debootstrap >&2 \
        || die "apt-get install docker.io debootstrap failed"
fi

if [ -S /var/run/docker.sock ] && ! pgrep -x dockerd >/dev/null; then
    # A socket left over from an engine that died would make dockerd refuse to start.
    as_root rm -f /var/run/docker.sock || true
fi

wait_s=15  # an engine already running may still be starting up
if ! pgrep -x dockerd >/dev/null; then
    wait_s=60
    log "starting dockerd (log: $LCC_DOCKERD_LOG)"
    # setsid: the engine outlives this script and the test session that ran it.
    as_root setsid dockerd --bip "$LCC_DOCKER_BIP" \
        --default-address-pool "base=$LCC_DOCKER_POOL,size=24" \
        >"$LCC_DOCKERD_LOG" 2>&1 </dev/null &
    disown || true
fi

for _ in $(seq "$wait_s"); do
    if docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
reason="$(docker info 2>&1 | grep -v '^ *$' | tail -n 1 || true)"
tail -n 20 "$LCC_DOCKERD_LOG" >&2 2>/dev/null || true
die "no Docker engine answered within $wait_s s: ${reason:-docker info failed}"
