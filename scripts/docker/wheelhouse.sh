#!/usr/bin/env bash
# Build the wheelhouse the image installs from with `pip install --no-index`, so the
# image build needs no PyPI (pip inside the build cannot reach it here).
#
#   scripts/docker/wheelhouse.sh
#
# Output, in $LCC_WHEELHOUSE (default .wheelhouse/ at the repo root, the build context
# the Dockerfile copies from):
#   deps/  wheels of lcc[server,fleet]'s dependencies (their own layer: changes rarely;
#          fleet: redis, for replicas that share a Redis store)
#   lcc/   the lcc wheel built from this checkout (lbc.h inside as lcc_toolchain/include)
# Uses $PYTHON (default: python3) with pip; its version must be the image's
# (bookworm's $LCC_IMAGE_PYTHON) so compiled wheels such as pydantic-core fit.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PYTHON="${PYTHON:-python3}"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "no Python at PYTHON=$PYTHON"
[ "$pyver" = "$LCC_IMAGE_PYTHON" ] \
    || die "$PYTHON is $pyver but the image runs Python $LCC_IMAGE_PYTHON; set PYTHON=python$LCC_IMAGE_PYTHON"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    # Debian's python3 ships without pip: use a private venv for the build.
    venv="$LCC_WHEELHOUSE/.pip-venv"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv" \
        || die "$PYTHON has no pip and no venv module: apt-get install -y python3-venv"
    PYTHON="$venv/bin/python"
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/lcc-wheels.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

log "pip wheel lcc[server,fleet] from $LCC_REPO_ROOT"
# pip's own cache makes a rerun cheap; stale wheels of old dependency versions are dropped
# because the directories are replaced as a whole.
# async-timeout: redis needs it on Python < 3.11.3, which bookworm's 3.11.2 is; the host's
# newer 3.11 would leave it out.
if ! "$PYTHON" -m pip wheel --disable-pip-version-check --wheel-dir "$stage/all" \
        "$LCC_REPO_ROOT[server,fleet]" "async-timeout>=4.0.3" >"$stage/pip.log" 2>&1; then
    tail -n 40 "$stage/pip.log" >&2
    die "pip wheel failed"
fi

mkdir -p "$stage/deps" "$stage/lcc"
mv "$stage"/all/lcc-*.whl "$stage/lcc/"
mv "$stage"/all/*.whl "$stage/deps/" 2>/dev/null || true
"$PYTHON" - "$stage/lcc" <<'PY' || die "the lcc wheel lacks lcc_toolchain/include/lbc.h (see pyproject.toml force-include)"
import sys, zipfile, pathlib
whl = next(pathlib.Path(sys.argv[1]).glob("lcc-*.whl"))
sys.exit(0 if "lcc_toolchain/include/lbc.h" in zipfile.ZipFile(whl).namelist() else 1)
PY

mkdir -p "$LCC_WHEELHOUSE"
for d in deps lcc; do
    rm -rf "$LCC_WHEELHOUSE/$d"
    mv "$stage/$d" "$LCC_WHEELHOUSE/$d"
done
log "wheelhouse: $(ls "$LCC_WHEELHOUSE/deps" | wc -l) dependency wheels, $(ls "$LCC_WHEELHOUSE/lcc")"
