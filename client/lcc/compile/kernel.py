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
import os

from ..errors import BtfError
from .. import kernelcache
from ..kernelcache import KERNEL_NOTES, parse_build_id

__all__ = ["KERNEL_BTF", "KERNEL_NOTES", "KernelIdentity", "btf_identity", "build_id",
           "parse_build_id", "read_btf", "this_kernel"]

KERNEL_BTF = "/sys/kernel/btf/vmlinux"


class KernelIdentity:
    """The running kernel as the compile pipeline sees it (immutable).

    A plain class rather than a dataclass: it is made on every tool's start,
    and ``dataclasses`` costs several milliseconds to import.
    """

    __slots__ = ("release", "arch", "btf_id", "has_btf")

    release: str  # uname -r
    arch: str  # uname -m
    btf_id: str | None  # "build-id:<hex>", "sha256:<hex>" or None
    has_btf: bool  # /sys/kernel/btf/vmlinux exists

    def __init__(self, release: str, arch: str, btf_id: str | None, has_btf: bool) -> None:
        for k, v in (("release", release), ("arch", arch), ("btf_id", btf_id),
                     ("has_btf", has_btf)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"KernelIdentity is immutable ({name})")

    def _tuple(self) -> tuple:
        return (self.release, self.arch, self.btf_id, self.has_btf)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelIdentity) and self._tuple() == other._tuple()

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return (f"KernelIdentity(release={self.release!r}, arch={self.arch!r}, "
                f"btf_id={self.btf_id!r}, has_btf={self.has_btf!r})")

    @property
    def btf_path(self) -> str | None:
        return KERNEL_BTF if self.has_btf else None


def build_id(notes_path: str = KERNEL_NOTES) -> str | None:
    """The running kernel's GNU build-id, or None when /sys/kernel/notes lacks one."""
    return kernelcache.build_id(None if notes_path == KERNEL_NOTES else notes_path)


def btf_identity(*, notes_path: str = KERNEL_NOTES, btf_path: str = KERNEL_BTF) -> str | None:
    """A short name that changes whenever the kernel's BTF can change (see module doc)."""
    bid = build_id(notes_path)
    if bid:
        return f"build-id:{bid}"
    try:
        import hashlib  # only for a kernel without a build-id
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
