"""Who the running kernel is, cheaply, and small answers remembered per kernel.

A tool's start should not recompute what only changes with the kernel:
names of kernel enums (read from its 5 MB BTF), which probes pass.  This
module keeps such answers in the user's cache directory, under the
kernel's GNU build-id::

    <cache root>/kernel/<build-id>/<name>

The cache root is ``LCC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/lcc``
(default ``~/.cache/lcc``), as for the artifact cache.  The build-id comes
from ``/sys/kernel/notes`` (an ELF note, type 3 ``NT_GNU_BUILD_ID``, name
``GNU``): another kernel has another directory, so it never reads this
kernel's answers.  Without a build-id nothing is remembered.

Readers must treat what :func:`read` returns as untrusted bytes: a file cut
short or damaged is the reader's to ignore (and rewrite).  :func:`write`
never raises: a cache that cannot be written only costs time.
Nothing here needs privileges, and nothing is imported beyond ``os`` and
``struct``: this runs on every tool's start.
"""

from __future__ import annotations

import os
import struct


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KERNEL_NOTES", "boot_id", "build_id", "cache_root", "kernel_dir", "parse_build_id",
           "read", "sha256", "write"]

KERNEL_NOTES = "/sys/kernel/notes"
BOOT_ID = "/proc/sys/kernel/random/boot_id"

_NT_GNU_BUILD_ID = 3
# Notes read from sysfs are in the running machine's byte order.
_NOTE_HEADER = struct.Struct("=III")  # namesz, descsz, type
_UNSET = object()
_build_id: object = _UNSET


def sha256(data: bytes = b"") -> Any:
    """A sha256 hash object, as ``hashlib.sha256``, without importing hashlib
    where the interpreter has its own implementation (hashlib's OpenSSL
    binding costs milliseconds to load, on every start)."""
    global _sha256
    if _sha256 is None:
        try:
            from _sha256 import sha256 as impl  # CPython 3.11
        except ImportError:
            try:
                from _sha2 import sha256 as impl  # CPython 3.12+
            except ImportError:
                from hashlib import sha256 as impl
        _sha256 = impl
    return _sha256(data)


_sha256: Any = None


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


def build_id(notes_path: str | None = None) -> str | None:
    """The running kernel's GNU build-id (hex), or None when /sys/kernel/notes lacks one.

    Read once per process for the default path.
    """
    global _build_id
    if notes_path is None and _build_id is not _UNSET:
        return _build_id  # type: ignore[return-value]
    try:
        with open(notes_path or KERNEL_NOTES, "rb") as f:
            bid = parse_build_id(f.read())
    except OSError:
        bid = None
    if notes_path is None:
        _build_id = bid
    return bid


def boot_id() -> str | None:
    """This boot's random id (``/proc/sys/kernel/random/boot_id``), or None."""
    try:
        with open(BOOT_ID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def cache_root() -> str:
    """``LCC_CACHE_DIR``, else the user's cache directory for lcc (XDG)."""
    root = os.environ.get("LCC_CACHE_DIR")
    if root:
        return os.path.expanduser(root)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return os.path.join(xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache"), "lcc")


def kernel_dir(bid: str | None = None) -> str | None:
    """``<cache root>/kernel/<build-id>`` of the running kernel (or ``bid``); None
    without a build-id."""
    bid = bid or build_id()
    if not bid or not all(c in "0123456789abcdef" for c in bid):
        return None
    return os.path.join(cache_root(), "kernel", bid)


def read(name: str) -> bytes | None:
    """The bytes remembered as ``name`` for this kernel, or None."""
    d = kernel_dir()
    if d is None:
        return None
    try:
        with open(os.path.join(d, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def write(name: str, data: bytes) -> str | None:
    """Remember ``data`` as ``name`` for this kernel (written whole, then renamed
    into place); returns the path, or None when it could not be written."""
    d = kernel_dir()
    if d is None:
        return None
    path = os.path.join(d, name)
    from ._files import write_atomic  # (it imports threading: not on a cached start)
    try:
        write_atomic(path, data)
    except OSError:
        return None
    return path


class Answers:
    """Short text answers about this kernel, remembered in one file (``name``).

    ``get(key)`` is the answer or None; ``put(key, value)`` records one and
    rewrites the file.  Keys and values are single-line text (tabs and line
    breaks are replaced by spaces).  A damaged line is ignored and the file
    rewritten on the next ``put``; entries that depend on more than the
    kernel build (such as this boot) carry that in their key.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._data is None:
            data: dict[str, str] = {}
            raw = read(self.name)
            if raw is not None:
                try:
                    for line in raw.decode("utf-8").split("\n"):
                        k, sep, v = line.partition("\t")
                        if sep and k:
                            data[k] = v
                except UnicodeDecodeError:
                    data = {}
            self._data = data
        return self._data

    def get(self, key: str) -> str | None:
        return self._load().get(_clean(key))

    def put(self, key: str, value: str) -> None:
        data = self._load()
        data[_clean(key)] = _clean(value)
        write(self.name, "".join(f"{k}\t{v}\n" for k, v in data.items()).encode("utf-8"))


def _clean(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ").replace("\r", " ")
