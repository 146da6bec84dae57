#!/usr/bin/env bash
# Build the compile service image, from nothing to $LCC_IMAGE (lcc-compiler:latest):
#
#   scripts/docker/build.sh
#
# 1. engine.sh      a Docker engine (installs docker.io and starts dockerd if needed)
# 2. base-image.sh  debian:bookworm-slim via debootstrap + docker import, kept if present
# 3. wheelhouse.sh  .wheelhouse/ with lcc[server] and its dependencies (pip wheel)
# 4. docker build -f Dockerfile.compiler, reusing cached layers
# Each step prints its time on stderr. Extra arguments go to `docker build`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
here="$(dirname "${BASH_SOURCE[0]}")"

step() {
    local name="$1"; shift
    local t0=$SECONDS
    "$@"
    log "$name: $((SECONDS - t0)) s"
}

t_start=$SECONDS
step engine "$here/engine.sh"
step base-image "$here/base-image.sh"
step wheelhouse "$here/wheelhouse.sh"

build_image() {
    local build_log="${LCC_BUILD_LOG:-${TMPDIR:-/tmp}/lcc-docker-build.log}"
    # The legacy builder: its layer cache needs no buildx plugin, which Debian's docker.io lacks.
    if ! DOCKER_BUILDKIT=0 docker build --file "$LCC_REPO_ROOT/Dockerfile.compiler" \
            --tag "$LCC_IMAGE" "$@" "$LCC_REPO_ROOT" >"$build_log" 2>&1; then
        tail -n 60 "$build_log" >&2
        die "docker build failed; full log: $build_log"
    fi
    log "docker build: $(grep -c 'Using cache' "$build_log") cached steps (log: $build_log)"
    # Earlier builds of the image, untagged by this one; the layers it uses stay cached.
    docker image prune --force --filter label=org.lcc.image=compiler >/dev/null || true
}
step "docker build $LCC_IMAGE" build_image "$@"
log "built $LCC_IMAGE ($(docker image inspect -f '{{.Id}}' "$LCC_IMAGE")) in $((SECONDS - t_start)) s"
