#!/usr/bin/env bash
# Set up this machine (scripts/setup.sh) and run an lcc example tool.
# Default: tcpconnlat for 10 seconds. Otherwise: scripts/example.sh <tool> [args...]
set -euo pipefail
cd "$(dirname "$0")/.."
LCC_WITH_DOCKER=0 scripts/setup.sh
tool="${1:-tcpconnlat}"
[ $# -gt 0 ] && shift
[ $# -eq 0 ] && set -- -d 10
exec .venv/bin/python "examples/$tool/$tool.py" "$@"
