"""Kernel BTF by (arch, release): the server's own kernel plus uploads.

Layout: ``<root>/<arch>/<release>.btf``, each written atomically, with
``.owner`` (who uploaded it), ``.sha256`` (checked by ``materialise``) and,
while a fleet replica's upload is not yet in Redis, ``.unsynced`` beside it.  The
server's own ``/sys/kernel/btf/vmlinux`` is listed under its ``uname -m`` /
``uname -r`` without being copied, and cannot be replaced.  Uploads must be
raw BTF (what ``/sys/kernel/btf/vmlinux`` holds): ``check_btf`` checks the
header (magic 0xeB9F in either byte order, version 1, sections inside the
blob); the service then has bpftool read it before keeping it.

Arch and release are checked by ``lcc_toolchain.validation`` before any path is
built, and the final path is checked to lie under the root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from lcc_server.tokens import Caller
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.errors import BtfUnavailable
from lcc_toolchain.validation import InvalidRequest, check_arch, check_release

__all__ = ["BtfConflict", "BtfEntry", "BtfForbidden", "BtfQuotaExceeded", "BtfStore",
           "check_btf"]

_BTF_MAGIC = 0xEB9F
# Files kept beside ``<release>.btf``: who uploaded it, its sha256, "not yet in the shared store".
_SIDECARS = (".owner", ".sha256", ".unsynced")
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
    """A known kernel, as stores list it: never a local path (a replica asks
    ``materialise`` for a file where one is needed).  ``owner`` is the name of
    the token that uploaded it, "host" for a replica's own kernel, None when
    not recorded."""

    arch: str
    release: str
    source: str  # "host" or "upload"
    owner: str | None = None
    sha256: str | None = None
    size: int | None = None

    def to_dict(self) -> dict:
        return {"arch": self.arch, "release": self.release, "source": self.source,
                "size": self.size, "sha256": self.sha256, "owner": self.owner}


class _Sha256Memo:
    """sha256 of files, recomputed only when a file's (inode, mtime, size) changes."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> tuple[str, int]:
        st = path.stat()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == stamp:
            return known[1], st.st_size
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._lock:
            self._known[path] = (stamp, sha)
        return sha, st.st_size


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
    """Where the BTF of each known kernel is; safe across threads and across
    the processes sharing one state directory (``--workers N``, or replicas on
    one volume): every change is made under an exclusive ``flock`` of
    ``<root>/.lock``, so two first uploads of one kernel give one creation and
    one ``BtfConflict``, and concurrent new releases never pass ``max_releases``."""

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
        self._sha256 = _Sha256Memo()

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive across threads and processes (one open file per holder:
        ``flock`` locks belong to the open file, so threads exclude each other too)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _is_host(self, arch: str, release: str) -> bool:
        return ((arch, release) == (self.host_arch, self.host_release)
                and self.host_btf is not None and self.host_btf.is_file())

    def _upload_path(self, arch: str, release: str) -> Path:
        check_arch(arch)
        check_release(release)
        path = (self.root / arch / f"{release}.btf").resolve()
        if path.parent != (self.root / arch).resolve():
            raise InvalidRequest("kernel release would leave the BTF store")
        return path

    def _file(self, arch: str, release: str) -> Path | None:
        """The local file of a known kernel (checks the names), or None."""
        path = self._upload_path(arch, release)
        if self._is_host(arch, release):
            return self.host_btf
        return path if path.is_file() else None

    def _entry(self, arch: str, release: str, path: Path) -> BtfEntry | None:
        try:
            sha, size = self._sha256(path)
        except FileNotFoundError:  # removed meanwhile
            return None
        if path == self.host_btf:
            return BtfEntry(arch, release, "host", "host", sha, size)
        return BtfEntry(arch, release, "upload", self.owner(arch, release), sha, size)

    def find(self, arch: str, release: str) -> BtfEntry | None:
        """The entry for (arch, release), or None.  Raises ``InvalidRequest``."""
        path = self._file(arch, release)
        return None if path is None else self._entry(arch, release, path)

    def read(self, arch: str, release: str) -> bytes | None:
        """The raw BTF of (arch, release), or None.  Raises ``InvalidRequest``."""
        path = self._file(arch, release)
        try:
            return None if path is None else path.read_bytes()
        except FileNotFoundError:
            return None

    def materialise(self, arch: str, release: str) -> Path:
        """A local file holding the BTF of (arch, release), for the tools that
        need one (bpftool, clang); its sha256 is checked against the one recorded
        when it was stored.  Raises ``InvalidRequest``, ``BtfUnavailable``
        (unknown here, or the file no longer matches)."""
        path = self._file(arch, release)
        if path is None:
            raise BtfUnavailable(f"no BTF for {arch}/{release} on this replica")
        if path != self.host_btf:
            try:
                recorded = path.with_suffix(".sha256").read_text().strip()
            except OSError:
                recorded = None  # stored by an older version: nothing to check against
            if recorded is not None and self._sha256(path)[0] != recorded:
                raise BtfUnavailable(f"the stored BTF of {arch}/{release} does not match its "
                                     "sha256 (damaged on disk); upload it again with "
                                     "replace=true")
        return path

    def owner(self, arch: str, release: str) -> str | None:
        """Name of the caller who uploaded (arch, release), if recorded."""
        if self._is_host(arch, release):
            return "host"
        try:
            return self._upload_path(arch, release).with_suffix(".owner").read_text().strip()
        except OSError:
            return None

    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None, unsynced: bool = False) -> tuple[BtfEntry, bool]:
        """Store ``data``; returns (entry, created).  Identical data is a no-op.
        ``caller`` (None on a service without tokens) is recorded as the upload's
        owner; only the owner or an admin may replace it.  ``unsynced`` marks a
        new upload as not yet pushed to a shared store (``unsynced()``).

        Raises ``InvalidRequest`` (bad names or not BTF), ``BtfConflict``
        (different BTF already there and ``replace`` is false, or the host's),
        ``BtfForbidden`` (someone else's upload), ``BtfQuotaExceeded`` (a new
        release beyond ``max_releases``).
        """
        path = self._upload_path(arch, release)
        check_btf(data)
        if self._is_host(arch, release):
            if self.host_btf.read_bytes() == data:
                return self.find(arch, release), False
            raise BtfConflict(f"{arch}/{release} is this server's own kernel; its BTF "
                              "cannot be replaced")
        with self._locked():
            if path.is_file():
                if path.read_bytes() == data:
                    return self.find(arch, release), False
                if not replace:
                    raise BtfConflict(f"a different BTF is stored for {arch}/{release}; "
                                      "pass replace=true to overwrite it")
                owner = self.owner(arch, release)
                if caller is not None and not caller.admin and owner != caller.name:
                    raise BtfForbidden(f"{arch}/{release} was uploaded by "
                                       f"{owner or 'an earlier version of the service'}; "
                                       "only that token or an admin may replace it")
            elif self.max_releases is not None and self.upload_count() >= self.max_releases:
                raise BtfQuotaExceeded(self.max_releases)
            self._write(path, data, caller.name if caller else None, unsynced=unsynced)
        return self.find(arch, release), True

    def _write(self, path: Path, data: bytes, owner: str | None, *, unsynced: bool) -> None:
        # under the lock; the BTF last, so a file that exists has its sidecars
        if owner is not None:
            write_atomic(path.with_suffix(".owner"), f"{owner}\n".encode(), prefix=".up-",
                         mode=0o644)
        else:
            path.with_suffix(".owner").unlink(missing_ok=True)
        write_atomic(path.with_suffix(".sha256"),
                     f"{hashlib.sha256(data).hexdigest()}\n".encode(), prefix=".up-",
                     mode=0o644)
        if unsynced:
            write_atomic(path.with_suffix(".unsynced"), b"", prefix=".up-", mode=0o644)
        else:
            path.with_suffix(".unsynced").unlink(missing_ok=True)
        write_atomic(path, data, prefix=".up-", mode=0o644)  # bpftool reads it as nobody

    def install(self, arch: str, release: str, data: bytes, owner: str | None) -> BtfEntry:
        """Keep ``data`` for (arch, release) as it is elsewhere (a copy of a shared
        store's entry), replacing what is here; no ownership checks."""
        path = self._upload_path(arch, release)
        with self._locked():
            self._write(path, data, owner, unsynced=False)
        return self.find(arch, release)

    def remove(self, arch: str, release: str) -> None:
        """Delete an upload (used when bpftool cannot read what was stored)."""
        path = self._upload_path(arch, release)
        with self._locked():
            path.unlink(missing_ok=True)
            for suffix in _SIDECARS:
                path.with_suffix(suffix).unlink(missing_ok=True)

    # -- uploads not yet in a shared store ----------------------------------------

    def unsynced(self) -> list[tuple[str, str]]:
        """(arch, release) of uploads stored with ``unsynced=True`` since."""
        return [(p.parent.name, p.name[:-len(".unsynced")])
                for p in sorted(self.root.glob("*/*.unsynced"))
                if p.with_suffix(".btf").is_file()]

    def is_unsynced(self, arch: str, release: str) -> bool:
        return self._upload_path(arch, release).with_suffix(".unsynced").is_file()

    def mark_synced(self, arch: str, release: str) -> None:
        self._upload_path(arch, release).with_suffix(".unsynced").unlink(missing_ok=True)

    def set_aside(self, arch: str, release: str) -> Path:
        """Move an upload out of the store (kept, never served) to
        ``<root>/.set-aside/<arch>/<release>-<sha256 prefix>.btf``; returns that path."""
        path = self._upload_path(arch, release)
        with self._locked():
            data = path.read_bytes()
            aside = self.root / ".set-aside" / arch
            aside.mkdir(parents=True, exist_ok=True)
            target = aside / f"{release}-{hashlib.sha256(data).hexdigest()[:16]}.btf"
            os.replace(path, target)
            for suffix in (".owner",):
                if path.with_suffix(suffix).is_file():
                    os.replace(path.with_suffix(suffix), target.with_suffix(suffix))
            for suffix in _SIDECARS:
                path.with_suffix(suffix).unlink(missing_ok=True)
        return target

    def upload_count(self) -> int:
        """How many releases are uploaded (the host's own kernel is not one)."""
        if not self.root.is_dir():
            return 0
        return sum(1 for arch_dir in self.root.iterdir()
                   if arch_dir.is_dir() and not arch_dir.name.startswith(".")
                   for f in arch_dir.glob("*.btf")
                   if not self._is_host(arch_dir.name, f.name[:-len(".btf")]))

    def entries(self) -> list[BtfEntry]:
        """Every stored kernel, the host's first, then uploads by arch and release."""
        out = []
        if self.host_btf is not None and self.host_btf.is_file():
            host = self._entry(self.host_arch, self.host_release, self.host_btf)
            out += [host] if host is not None else []
        if self.root.is_dir():
            for arch_dir in sorted(self.root.iterdir()):
                if not arch_dir.is_dir() or arch_dir.name.startswith("."):
                    continue
                for f in sorted(arch_dir.glob("*.btf")):
                    release = f.name[:-len(".btf")]
                    if any(e.arch == arch_dir.name and e.release == release for e in out):
                        continue
                    entry = self._entry(arch_dir.name, release, f)
                    out += [entry] if entry is not None else []
        return out
