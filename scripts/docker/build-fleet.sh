#!/usr/bin/env bash
# Build the images of deploy/fleet/docker-compose.yml, offline like the compiler's:
#
#   scripts/docker/build-fleet.sh
#
# 1. build.sh       $LCC_IMAGE (lcc-compiler:latest): the replicas; its wheelhouse holds
#                   redis (lcc[fleet]) so they can share a Redis store
# 2. docker build   $LCC_REDIS_IMAGE (lcc-fleet-redis:latest) and $LCC_HAPROXY_IMAGE
#                   (lcc-fleet-haproxy:latest) from deploy/fleet/Dockerfile.*: redis-server
#                   and haproxy from Debian on the same debootstrap base (base-image.sh)
# Cached layers are reused; each step prints its time on stderr.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
here="$(dirname "${BASH_SOURCE[0]}")"
fleet="$LCC_REPO_ROOT/deploy/fleet"
LCC_REDIS_IMAGE="${LCC_REDIS_IMAGE:-lcc-fleet-redis:latest}"
LCC_HAPROXY_IMAGE="${LCC_HAPROXY_IMAGE:-lcc-fleet-haproxy:latest}"

t_start=$SECONDS
"$here/build.sh"

build_one() {
    local dockerfile="$1" tag="$2" label="$3" t0=$SECONDS
    local build_log="${TMPDIR:-/tmp}/lcc-docker-build-$label.log"
    # The legacy builder, as build.sh: its layer cache needs no buildx plugin.
    if ! DOCKER_BUILDKIT=0 docker build --file "$fleet/$dockerfile" --tag "$tag" "$fleet" \
            >"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        die "docker build of $tag failed; full log: $build_log"
    fi
    docker image prune --force --filter "label=org.lcc.image=$label" >/dev/null || true
    log "docker build $tag: $((SECONDS - t0)) s ($(grep -c 'Using cache' "$build_log") cached steps)"
}
build_one Dockerfile.redis "$LCC_REDIS_IMAGE" fleet-redis
build_one Dockerfile.haproxy "$LCC_HAPROXY_IMAGE" fleet-haproxy
log "fleet images built in $((SECONDS - t_start)) s"
