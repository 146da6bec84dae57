#!/usr/bin/env bash
# Set up this machine (scripts/setup.sh) and run an lcc example tool.
# Default: tcpconnlat for 10 seconds. Otherwise: scripts/example.sh <tool> [args...]
# tcpconnlat runs with a few loopback connections beside it (one every half
# second, examples/tcpconnlat/connect_loop.py), so that its table is not empty;
# LCC_EXAMPLE_TRAFFIC=0 leaves them out.
# LCC_SKIP_SETUP=1 skips the setup; LCC_PYTHON picks the interpreter (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${LCC_SKIP_SETUP:-0}" = 1 ] || LCC_WITH_DOCKER=0 scripts/setup.sh
py="${LCC_PYTHON:-.venv/bin/python}"
tool="${1:-tcpconnlat}"
[ $# -gt 0 ] && shift
[ $# -eq 0 ] && set -- -d 10
if [ "$tool" != tcpconnlat ] || [ "${LCC_EXAMPLE_TRAFFIC:-1}" = 0 ]; then
    exec "$py" "examples/$tool/$tool.py" "$@"
fi
echo "example: making a loopback TCP connection every 0.5 s for tcpconnlat to see" >&2
"$py" examples/tcpconnlat/connect_loop.py 0.5 600 &
traffic=$!
trap 'kill "$traffic" 2>/dev/null || true' EXIT
status=0
"$py" "examples/$tool/$tool.py" "$@" || status=$?
exit "$status"
