#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for lcc: system packages, a virtualenv
# in .venv with lcc installed editable, and the tracefs/bpffs mounts.
# Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(clang llvm libbpf-dev libbpf1 bpftool iproute2 nftables python3-venv systemtap-sdt-dev
      prometheus chromium redis-server haproxy bpftrace libbpf-tools)
[ "${LCC_WITH_DOCKER:-1}" = 1 ] && PKGS+=(docker.io debootstrap docker-compose)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[server,dev,docker,export,fleet,numpy]'

# BPF programs attach through tracefs; pinning needs bpffs.
if [ "$(id -u)" = 0 ]; then
    mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
fi
