#!/usr/bin/env bash
# Make the base image the Dockerfile's FROM names ($LCC_BASE_IMAGE, debian:bookworm-slim)
# without Docker Hub: debootstrap a minimal bookworm from the Debian mirror apt uses on
# this host and `docker import` it.
#
#   scripts/docker/base-image.sh [--force]
#
# Does nothing when the image already exists (it is the root of the layer cache: a
# rebuild would invalidate every layer above it), unless --force. Needs root and a
# running engine (engine.sh).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" -eq 0 ] && image_exists "$LCC_BASE_IMAGE"; then
    log "base image $LCC_BASE_IMAGE exists; keeping it"
    exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

# The mirror apt already uses here (deb822 or one-line sources alike).
apt_repo() {
    apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' 2>/dev/null \
        | awk -v rel="$1" '$1 == "deb" && $2 == rel { print $3; exit }'
}
mirror="${LCC_DEBIAN_MIRROR:-$(apt_repo "$LCC_SUITE")}"
mirror="${mirror:-http://deb.debian.org/debian/}"
security="${LCC_DEBIAN_SECURITY_MIRROR:-$(apt_repo "$LCC_SUITE-security")}"

work="$(mktemp -d /var/tmp/lcc-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/root"

log "debootstrap --variant=minbase $LCC_SUITE from $mirror"
debootstrap --variant=minbase "$LCC_SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null
         die "debootstrap failed"; }

{
    echo "deb ${mirror%/} $LCC_SUITE main"
    echo "deb ${mirror%/} $LCC_SUITE-updates main"
    [ -n "$security" ] && echo "deb ${security%/} $LCC_SUITE-security main"
} >"$rootfs/etc/apt/sources.list"

# What the official -slim image does: no docs, man pages or .deb files in layers.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/lcc-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
CFG
cat >"$rootfs/etc/apt/apt.conf.d/lcc-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
CFG
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/debootstrap

log "importing as $LCC_BASE_IMAGE"
tar --numeric-owner -C "$rootfs" -c . \
    | docker import --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $LCC_SUITE $mirror" - "$LCC_BASE_IMAGE" >/dev/null
log "base image $LCC_BASE_IMAGE: $(docker image inspect -f '{{.Size}}' "$LCC_BASE_IMAGE") bytes"
