"""Kernel BTF by (arch, release): the server's own kernel plus uploads.

Layout: ``<root>/<arch>/<release>.btf``, each written atomically.  The
server's own ``/sys/kernel/btf/vmlinux`` is listed under its ``uname -m`` /
``uname -r`` without being copied, and cannot be replaced.  Uploads must be
raw BTF (what ``/sys/kernel/btf/vmlinux`` holds): ``check_btf`` checks the
header (magic 0xeB9F in either byte order, version 1, sections inside the
blob); the service then has bpftool read it before keeping it.

Arch and release are checked by ``lcc_toolchain.validation`` before any path is
built, and the final path is checked to lie under the root.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from lcc_server.tokens import Caller
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.validation import InvalidRequest, check_arch, check_release

__all__ = ["BtfConflict", "BtfEntry", "BtfForbidden", "BtfQuotaExceeded", "BtfStore",
           "check_btf"]

_BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len


class BtfForbidden(PermissionError):
    """The caller may not replace another caller's upload."""


class BtfConflict(Exception):
    """A different BTF is already stored for this (arch, release)."""


class BtfQuotaExceeded(BtfConflict):
    """As many releases as the store keeps (``LCC_MAX_BTF_RELEASES``) are uploaded."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"this service already keeps {limit} uploaded kernel releases "
                         "(LCC_MAX_BTF_RELEASES); ask its operator to remove unused ones or "
                         "raise the limit")


@dataclass(frozen=True)
class BtfEntry:
    """A known kernel.  ``path`` is a local file holding its BTF (None in a
    listing of a shared store, whose entries are materialised only when used);
    ``owner`` the name of the token that uploaded it, "host" for a replica's
    own kernel, None when not recorded; ``sha256``/``size`` when known
    without reading the file."""

    arch: str
    release: str
    path: Path | None
    source: str  # "host" or "upload"
    owner: str | None = None
    sha256: str | None = None
    size: int | None = None

    def to_dict(self, sha256: str | None = None) -> dict:
        size = self.size if self.size is not None else self.path.stat().st_size
        return {"arch": self.arch, "release": self.release, "source": self.source,
                "size": size, "sha256": sha256 or self.sha256, "owner": self.owner}


def check_btf(data: bytes) -> None:
    """Raise ``InvalidRequest`` unless ``data`` starts like raw BTF and its
    sections lie inside it."""
    if len(data) < _HEADER.size:
        raise InvalidRequest(f"BTF is {len(data)} bytes, shorter than its header")
    for order in ("<", ">"):
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack(order + _HEADER.format, data[:_HEADER.size])
        if magic == _BTF_MAGIC:
            break
    else:
        raise InvalidRequest("not raw BTF: bad magic (expected 0xeB9F, as in "
                             "/sys/kernel/btf/vmlinux)")
    if version != 1:
        raise InvalidRequest(f"BTF version {version} is not supported (expected 1)")
    body = len(data) - hdr_len
    if hdr_len < _HEADER.size or body < 0 or type_off + type_len > body or str_off + str_len > body:
        raise InvalidRequest("BTF header describes sections outside the data")
    if str_len == 0:
        raise InvalidRequest("BTF has no string section")


class BtfStore:
    """Where the BTF of each known kernel is; thread-safe (atomic renames)."""

    def __init__(self, root: Path, *, host_btf: Path | None = None,
                 host_arch: str | None = None, host_release: str | None = None,
                 max_releases: int | None = None) -> None:
        self.root = Path(root)
        #: uploads kept at most (None: no limit); a new one beyond is ``BtfQuotaExceeded``
        self.max_releases = max_releases
        uname = os.uname()
        self.host_arch = host_arch or uname.machine
        self.host_release = host_release or uname.release
        self.host_btf = Path(host_btf) if host_btf else None

    def _host(self) -> BtfEntry | None:
        if self.host_btf is not None and self.host_btf.is_file():
            return BtfEntry(self.host_arch, self.host_release, self.host_btf, "host", "host")
        return None

    def _upload_path(self, arch: str, release: str) -> Path:
        check_arch(arch)
        check_release(release)
        path = (self.root / arch / f"{release}.btf").resolve()
        if path.parent != (self.root / arch).resolve():
            raise InvalidRequest("kernel release would leave the BTF store")
        return path

    def find(self, arch: str, release: str) -> BtfEntry | None:
        """The entry for (arch, release), or None.  Raises ``InvalidRequest``."""
        path = self._upload_path(arch, release)
        host = self._host()
        if host is not None and (arch, release) == (host.arch, host.release):
            return host
        if not path.is_file():
            return None
        return BtfEntry(arch, release, path, "upload", self.owner(arch, release))

    def owner(self, arch: str, release: str) -> str | None:
        """Name of the caller who uploaded (arch, release), if recorded."""
        try:
            return self._upload_path(arch, release).with_suffix(".owner").read_text().strip()
        except OSError:
            return None

    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None) -> tuple[BtfEntry, bool]:
        """Store ``data``; returns (entry, created).  Identical data is a no-op.
        ``caller`` (None on a service without tokens) is recorded as the upload's
        owner; only the owner or an admin may replace it.

        Raises ``InvalidRequest`` (bad names or not BTF), ``BtfConflict``
        (different BTF already there and ``replace`` is false, or the host's),
        ``BtfForbidden`` (someone else's upload), ``BtfQuotaExceeded`` (a new
        release beyond ``max_releases``).
        """
        path = self._upload_path(arch, release)
        check_btf(data)
        existing = self.find(arch, release)
        if existing is not None:
            if existing.path.read_bytes() == data:
                return existing, False
            if existing.source == "host":
                raise BtfConflict(f"{arch}/{release} is this server's own kernel; its BTF "
                                  "cannot be replaced")
            if not replace:
                raise BtfConflict(f"a different BTF is stored for {arch}/{release}; "
                                  "pass replace=true to overwrite it")
            owner = self.owner(arch, release)
            if caller is not None and not caller.admin and owner != caller.name:
                raise BtfForbidden(f"{arch}/{release} was uploaded by "
                                   f"{owner or 'an earlier version of the service'}; only "
                                   "that token or an admin may replace it")
        elif self.max_releases is not None and self.upload_count() >= self.max_releases:
            raise BtfQuotaExceeded(self.max_releases)
        if caller is not None:
            write_atomic(path.with_suffix(".owner"), f"{caller.name}\n".encode(),
                         prefix=".up-", mode=0o644)
        write_atomic(path, data, prefix=".up-", mode=0o644)  # bpftool reads it as nobody
        return BtfEntry(arch, release, path, "upload", caller.name if caller else None), True

    def install(self, arch: str, release: str, data: bytes, owner: str | None) -> BtfEntry:
        """Keep ``data`` for (arch, release) as it is elsewhere (a copy of a shared
        store's entry), replacing what is here; no ownership checks."""
        path = self._upload_path(arch, release)
        if owner is not None:
            write_atomic(path.with_suffix(".owner"), f"{owner}\n".encode(), prefix=".up-",
                         mode=0o644)
        write_atomic(path, data, prefix=".up-", mode=0o644)
        return BtfEntry(arch, release, path, "upload", owner)

    def remove(self, arch: str, release: str) -> None:
        """Delete an upload (used when bpftool cannot read what was stored)."""
        path = self._upload_path(arch, release)
        path.unlink(missing_ok=True)
        path.with_suffix(".owner").unlink(missing_ok=True)

    def upload_count(self) -> int:
        """How many releases are uploaded (the host's own kernel is not one)."""
        return sum(1 for e in self.entries() if e.source == "upload")

    def entries(self) -> list[BtfEntry]:
        """Every stored kernel, the host's first, then uploads by arch and release."""
        out = [h for h in (self._host(),) if h is not None]
        if self.root.is_dir():
            for arch_dir in sorted(self.root.iterdir()):
                if not arch_dir.is_dir() or arch_dir.name.startswith("."):
                    continue
                for f in sorted(arch_dir.glob("*.btf")):
                    release = f.name[:-len(".btf")]
                    if any(e.arch == arch_dir.name and e.release == release for e in out):
                        continue
                    out.append(BtfEntry(arch_dir.name, release, f, "upload",
                                        self.owner(arch_dir.name, release)))
        return out
