"""Who this kernel is: release, machine and the identity of its BTF.

The compile pipeline keys cached objects by the kernel they were compiled
for.  The release alone is not enough (two builds can share ``uname -r``),
so :func:`this_kernel` also names the kernel's BTF, cheaply:

- ``build-id:<hex>``: the GNU build-id note of the running kernel, read from
  ``/sys/kernel/notes`` (a few hundred bytes; the same build has the same
  BTF);
- ``sha256:<hex>``: otherwise the sha256 of ``/sys/kernel/btf/vmlinux``;
- ``None``: the kernel has neither (then it has no BTF of its own either).

Nothing here needs privileges.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass

from ..errors import BtfError

__all__ = ["KERNEL_BTF", "KERNEL_NOTES", "KernelIdentity", "btf_identity", "build_id",
           "read_btf", "this_kernel"]

KERNEL_BTF = "/sys/kernel/btf/vmlinux"
KERNEL_NOTES = "/sys/kernel/notes"

_NT_GNU_BUILD_ID = 3
# Notes read from sysfs are in the running machine's byte order.
_NOTE_HEADER = struct.Struct("=III")  # namesz, descsz, type


@dataclass(frozen=True)
class KernelIdentity:
    """The running kernel as the compile pipeline sees it."""

    release: str  # uname -r
    arch: str  # uname -m
    btf_id: str | None  # "build-id:<hex>", "sha256:<hex>" or None
    has_btf: bool  # /sys/kernel/btf/vmlinux exists

    @property
    def btf_path(self) -> str | None:
        return KERNEL_BTF if self.has_btf else None


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_build_id(notes: bytes) -> str | None:
    """The GNU build-id (hex) in an ELF note section's bytes, or None."""
    off = 0
    while off + _NOTE_HEADER.size <= len(notes):
        namesz, descsz, ntype = _NOTE_HEADER.unpack_from(notes, off)
        off += _NOTE_HEADER.size
        name = notes[off:off + namesz]
        off += _align4(namesz)
        desc = notes[off:off + descsz]
        off += _align4(descsz)
        if len(desc) < descsz:
            return None  # truncated
        if ntype == _NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU" and desc:
            return desc.hex()
    return None


def build_id(notes_path: str = KERNEL_NOTES) -> str | None:
    """The running kernel's GNU build-id, or None when /sys/kernel/notes lacks one."""
    try:
        with open(notes_path, "rb") as f:
            return parse_build_id(f.read())
    except OSError:
        return None


def btf_identity(*, notes_path: str = KERNEL_NOTES, btf_path: str = KERNEL_BTF) -> str | None:
    """A short name that changes whenever the kernel's BTF can change (see module doc)."""
    bid = build_id(notes_path)
    if bid:
        return f"build-id:{bid}"
    try:
        h = hashlib.sha256()
        with open(btf_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return f"sha256:{h.hexdigest()}"
    except OSError:
        return None


@functools.cache
def this_kernel() -> KernelIdentity:
    """The running kernel's identity (computed once per process)."""
    u = os.uname()
    return KernelIdentity(release=u.release, arch=u.machine, btf_id=btf_identity(),
                          has_btf=os.path.exists(KERNEL_BTF))


def read_btf(path: str = KERNEL_BTF) -> bytes:
    """The raw BTF of this kernel (what ``lcc btf push`` uploads).

    Raises :class:`BtfError` when the kernel has none (CONFIG_DEBUG_INFO_BTF off).
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise BtfError(f"{path} does not exist: this kernel has no BTF",
                       hint="compile through a service that has this kernel's BTF, "
                            "or use lcc's btf='server' option") from None
    except OSError as e:
        raise BtfError(f"cannot read {path}: {e.strerror}") from None
