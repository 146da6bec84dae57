"""The toolchain identity, remembered on disk against what it was computed from.

The identity (``Toolchain.identity()``: clang's and bpftool's versions, the
hashes of lcc's and libbpf's headers, the flags version) is part of every
cache key.  Computing it runs ``clang --version`` and ``bpftool version``
(about 60 ms) and reads every header, so it is saved in
``<work dir>/identity.json`` beside a *fingerprint*: the resolved paths,
sizes, modification times and inodes of both programs and of every header it
hashes.  While the fingerprint matches, the saved identity is the identity:
an upgraded clang or an edited header changes a stat and so the fingerprint.

``identity_cached(clang, work_dir)`` answers from that file alone, without
starting a program or importing the toolchain (for a cache-hit path);
``Toolchain.identity()`` uses the same file and fills it.  A missing, damaged
or stale file is only a miss.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .headers import FLAGS_VERSION, header_files

__all__ = ["FILE", "fingerprint", "identity_cached", "remember", "saved", "tool_path"]

#: The file in the work directory.
FILE = "identity.json"
_USR_INCLUDE = Path("/usr/include")


def tool_path(name: str) -> str | None:
    """The absolute path of program ``name`` (on PATH or in the sbin
    directories), or None."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return os.path.abspath(found) if found else None


def _stat(path: str | None, *, resolve: bool = False) -> list | None:
    """[path, size, mtime, inode] of what ``path`` names (``resolve``: the
    resolved path, for a program reached through links such as clang ->
    clang-14)."""
    if path is None:
        return None
    if resolve:
        path = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [path, st.st_size, st.st_mtime_ns, st.st_ino]


def fingerprint(clang: str, bpftool: str | None,
                libbpf_include: Path = _USR_INCLUDE) -> list:
    """What the identity of this toolchain is computed from, as stats:
    ``clang`` and ``bpftool`` (absolute paths; None: no bpftool), lcc's
    headers and libbpf's (``<libbpf_include>/bpf/*.h``), and the flags version.
    Raises ``ToolMissing`` when lcc's headers are missing."""
    libbpf = sorted(str(p) for p in (Path(libbpf_include) / "bpf").glob("*.h"))
    return [FLAGS_VERSION, _stat(clang, resolve=True), _stat(bpftool, resolve=True),
            *(_stat(str(p)) for p in header_files()), *(_stat(p) for p in libbpf)]


def saved(work_dir: Path, fp: list) -> dict | None:
    """The identity saved in ``work_dir`` for fingerprint ``fp``, or None."""
    try:
        saved = json.loads((Path(work_dir) / FILE).read_bytes())
        if saved["fingerprint"] == fp and isinstance(saved["identity"], dict):
            return saved["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def identity_cached(clang: str, work_dir: Path, *, bpftool: str = "bpftool",
                    libbpf_include: Path = _USR_INCLUDE) -> dict | None:
    """The identity ``Toolchain(clang=clang, bpftool=bpftool, work_dir=work_dir,
    libbpf_include=libbpf_include).identity()`` would return, read from
    ``<work_dir>/identity.json``; None when it is not there or anything it
    was computed from changed (then ask the ``Toolchain``, which saves it).
    Runs no program; costs a few dozen ``stat`` calls.  Raises ``ToolMissing``
    when lcc's headers are missing."""
    clang_path = tool_path(clang)
    if clang_path is None:
        return None
    return saved(work_dir, fingerprint(clang_path, tool_path(bpftool), libbpf_include))


def remember(work_dir: Path, fp: list, identity: dict) -> None:
    """Save ``identity`` for fingerprint ``fp`` (best effort: a read-only work
    directory only costs the next process the computation)."""
    from .atomic import write_atomic  # only when saving: a cache hit reads

    data = json.dumps({"fingerprint": fp, "identity": identity}).encode()
    try:
        write_atomic(Path(work_dir) / FILE, data, prefix=f".{FILE}.", mode=0o644)
    except OSError:
        pass
