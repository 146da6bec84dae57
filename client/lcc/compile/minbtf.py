"""Minimal BTF: the few kernel types one object's CO-RE relocations need.

libbpf resolves an object's CO-RE relocations against the kernel's BTF,
which it parses whole (5 MB, about 10 ms and 10 MB of memory) on every
load.  ``bpftool gen min_core_btf`` cuts that BTF down to the types one
object uses (a few KB); handed to libbpf as ``btf_custom_path`` it gives
the same relocations.  :func:`for_object` makes one the first time an
object loads on a kernel and keeps it in the artifact cache::

    <root>/artifacts/v1/minbtf/<kernel build-id>/<object sha256>.btf
    <root>/artifacts/v1/minbtf/<kernel build-id>/<object sha256>.none

A minimal BTF is valid only for the object it was made from and the kernel
it was made on, hence the path: another kernel (another GNU build-id) or
another object never finds it.  ``.none`` records that bpftool could not
make one for this object, so that each start does not try again.

It is an optimisation and never a reason for a load to fail: without
bpftool, without a build-id, with a file that is not BTF, :func:`for_object`
returns None (the caller loads with the kernel's BTF), and a load that
libbpf rejects with it is retried without it (:class:`lcc.ClbcBase`).
``LCC_MIN_BTF=0`` turns it off.  Programs that attach by BTF id (tp_btf,
fentry, ...) and typed ksyms still make libbpf read the kernel's own BTF
for those ids: they load as before, with less gain.
"""

from __future__ import annotations

import os
import struct

from .. import kernelcache

__all__ = ["KERNEL_BTF", "discard", "enabled", "for_object", "is_btf"]

KERNEL_BTF = "/sys/kernel/btf/vmlinux"
_FORMAT = "v1"
_BTF_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type/str off+len
_OFF = ("0", "false", "no", "off")


def enabled(environ: dict | None = None) -> bool:
    """Whether minimal BTF is used (``LCC_MIN_BTF`` is not 0/false/no/off)."""
    env = os.environ if environ is None else environ
    return (env.get("LCC_MIN_BTF") or "1").lower() not in _OFF


def is_btf(data: bytes) -> bool:
    """Whether ``data`` starts with a well-formed BTF header whose sections fit in it."""
    if len(data) < _BTF_HEADER.size:
        return False
    for order in ("<", ">"):
        magic, version, _flags, hdr_len, t_off, t_len, s_off, s_len = struct.unpack_from(
            order + "HBBIIIII", data)
        if magic == 0xEB9F:
            return (version == 1 and hdr_len >= _BTF_HEADER.size
                    and hdr_len + max(t_off + t_len, s_off + s_len) <= len(data) and s_len > 0)
    return False


def _dir(root: str, bid: str) -> str:
    return os.path.join(root, "artifacts", _FORMAT, "minbtf", bid)


def for_object(root: str, digest: str, object_path: str, *,
               bpftool: str | None = None, kernel_btf: str = KERNEL_BTF) -> str | None:
    """A minimal BTF file for the object ``digest`` (stored at ``object_path``) on
    the running kernel, made now if needed; None when there is none to use."""
    bid = kernelcache.build_id()
    if not bid or len(digest) != 64 or not os.path.exists(kernel_btf):
        return None
    d = _dir(root, bid)
    path = os.path.join(d, f"{digest}.btf")
    try:
        with open(path, "rb") as f:
            if is_btf(f.read()):
                return path
        os.unlink(path)  # damaged: made again below
    except OSError:
        pass
    if os.path.exists(os.path.join(d, f"{digest}.none")):
        return None
    return _make(d, path, digest, object_path, bpftool, kernel_btf)


def _make(d: str, path: str, digest: str, object_path: str, bpftool: str | None,
          kernel_btf: str) -> str | None:
    from .quick import _which
    tool = _which(bpftool or os.environ.get("LCC_BPFTOOL") or "bpftool")
    if tool == "-":
        return None  # no bpftool here: nothing recorded, it may be installed later
    import shutil
    import subprocess
    import tempfile
    try:
        os.makedirs(d, exist_ok=True)
        # bpftool writes into a fresh private directory: no name another user
        # could plant a link at.
        work = tempfile.mkdtemp(prefix=".minbtf-", dir=d)
    except OSError:
        return None
    try:
        tmp = os.path.join(work, "min.btf")
        try:
            r = subprocess.run([tool, "gen", "min_core_btf", kernel_btf, tmp, object_path],
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None  # could not run it this time (e.g. timed out under load): try again later
        try:
            with open(tmp, "rb") as f:
                ok = r.returncode == 0 and is_btf(f.read())
            if ok:
                os.replace(tmp, path)
                return path
        except OSError:
            pass
        discard(path)  # bpftool ran and could not make one for this object
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def discard(path: str) -> None:
    """Never use the minimal BTF at ``path`` again (libbpf rejected it, or bpftool
    could not make it): it is removed and a ``.none`` marker takes its place."""
    try:
        os.unlink(path)
    except OSError:
        pass
    try:
        with open(path[:-len(".btf")] + ".none", "wb"):
            pass
    except OSError:
        pass
