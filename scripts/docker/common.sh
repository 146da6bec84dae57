# shellcheck shell=bash
# Shared settings for the scripts in scripts/docker/. Sourced, not run.
#
# Every name below can be overridden from the environment.

set -euo pipefail

LCC_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The image the compile service runs from, and the base its Dockerfile's FROM names.
LCC_IMAGE="${LCC_IMAGE:-lcc-compiler:latest}"
LCC_BASE_IMAGE="${LCC_BASE_IMAGE:-debian:bookworm-slim}"
LCC_SUITE="${LCC_SUITE:-bookworm}"
# Python wheels the image installs with --no-index (the image build never reaches PyPI).
LCC_WHEELHOUSE="${LCC_WHEELHOUSE:-$LCC_REPO_ROOT/.wheelhouse}"
# The Python inside the image is bookworm's; host wheels must match its ABI.
LCC_IMAGE_PYTHON="3.11"
# Bridge addresses for a dockerd these scripts start (a test range, not a private one).
LCC_DOCKER_BIP="${LCC_DOCKER_BIP:-198.19.254.1/24}"
LCC_DOCKER_POOL="${LCC_DOCKER_POOL:-198.19.240.0/21}"
LCC_DOCKERD_LOG="${LCC_DOCKERD_LOG:-/var/log/lcc-dockerd.log}"

log() { printf '[lcc-docker] %s\n' "$*" >&2; }
die() { printf '[lcc-docker] error: %s\n' "$*" >&2; exit 1; }

# Run as root, or through sudo when it is there without a password.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 1
    fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
