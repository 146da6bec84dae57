"""Compiled objects on disk, addressed by content, and the request -> digest index.

Layout under the root::

    objects/<digest>.o        the object; <digest> is its sha256
    objects/<digest>.json     toolchain, warnings, programs, maps
    keys/<request key>        the digest a request key compiled to
    btf/<digest>-<btf sha>    BTF tailored to that object for that kernel

Every file is written to a temporary name and renamed, so readers in other
threads or processes never see half a file.  ``get`` checks the object's
sha256 when it reads it from disk and drops an entry that does not match
(disk corruption, tampering), so a caller compiles again instead of serving
it.  An entry deleted from disk is forgotten from memory too.

The files of all entries are kept under ``disk_bytes``: after each store the
least recently used entries (object, metadata, tailored BTF and the request
keys that led to them) are deleted until the total fits, so a stream of
unique requests cannot fill the disk.  A request whose entry was evicted is
simply compiled again.  The accounting starts from a scan of the directory
(oldest modification first) and is per process: several workers sharing one
directory each keep their own view, so the bound then holds per worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.errors import Diagnostic
from lcc_toolchain.validation import DIGEST_RE

__all__ = ["Artifact", "ArtifactStore"]

log = logging.getLogger("lcc_server.artifacts")


@dataclass
class Artifact:
    """A stored object with what was said about it when it was compiled."""

    digest: str
    object: bytes
    toolchain: dict = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    programs: list[dict] = field(default_factory=list)
    maps: list[dict] = field(default_factory=list)


class ArtifactStore:
    """Content-addressed objects; safe for concurrent threads and processes.

    The most recently used artifacts (up to ``memory_bytes`` of objects) and
    request keys are also kept in memory, so a cache hit reads no file.  On
    disk, entries are evicted least recently used first beyond ``disk_bytes``.
    """

    def __init__(self, root: Path, *, memory_bytes: int = 64 << 20,
                 disk_bytes: int = 2 << 30) -> None:
        self.root = Path(root)
        self._budget = memory_bytes
        self._mem: OrderedDict[str, Artifact] = OrderedDict()
        self._mem_bytes = 0
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.disk_bytes = disk_bytes
        self.evicted = 0  # entries deleted to stay under disk_bytes
        self._disk: OrderedDict[str, int] | None = None  # digest -> bytes, LRU first
        self._disk_total = 0
        self._key_files: dict[str, set[str]] = {}  # digest -> request keys naming it

    def _remember_in_memory(self, art: Artifact) -> None:
        with self._lock:
            if art.digest in self._mem:
                self._mem.move_to_end(art.digest)
                return
            self._mem[art.digest] = art
            self._mem_bytes += len(art.object)
            while self._mem_bytes > self._budget and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._mem_bytes -= len(old.object)

    def _obj(self, digest: str) -> Path:
        if not DIGEST_RE.fullmatch(digest):
            raise ValueError(f"bad digest {digest[:70]!r}")
        return self.root / "objects" / f"{digest}.o"

    def put(self, art: Artifact) -> None:
        """Store ``art`` (its digest must be the object's sha256)."""
        if hashlib.sha256(art.object).hexdigest() != art.digest:
            raise ValueError("artifact digest does not match its object")
        meta = {"toolchain": art.toolchain, "warnings": [w.to_dict() for w in art.warnings],
                "programs": art.programs, "maps": art.maps}
        obj = self._obj(art.digest)
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        write_atomic(obj.with_suffix(".json"), meta_bytes)
        write_atomic(obj, art.object)
        self._remember_in_memory(art)
        self._account(art.digest, len(art.object) + len(meta_bytes), stored=True)

    def get(self, digest: str) -> Artifact | None:
        """The artifact, or None when absent or corrupt (a corrupt one is deleted)."""
        obj = self._obj(digest)
        with self._lock:
            art = self._mem.get(digest)
            if art is not None:
                self._mem.move_to_end(digest)
        if art is not None and obj.exists():
            self._used(digest)
            return art
        try:
            data = obj.read_bytes()
            meta = json.loads(obj.with_suffix(".json").read_bytes())
        except (OSError, ValueError):
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            obj.unlink(missing_ok=True)
            return None
        art = Artifact(digest=digest, object=data, toolchain=meta.get("toolchain", {}),
                       warnings=[Diagnostic.from_dict(w) for w in meta.get("warnings", [])],
                       programs=meta.get("programs", []), maps=meta.get("maps", []))
        self._remember_in_memory(art)
        self._used(digest)
        with contextlib.suppress(OSError):  # so that a restart sees it as recent
            os.utime(obj)
        return art

    def remember(self, key: str, digest: str) -> None:
        """Record that request ``key`` compiled to ``digest``."""
        self._obj(digest)
        write_atomic(self.root / "keys" / key, digest.encode())
        with self._lock:
            self._keys[key] = digest
            while len(self._keys) > 4096:
                self._keys.popitem(last=False)
            self._key_files.setdefault(digest, set()).add(key)

    def lookup(self, key: str) -> Artifact | None:
        """The artifact request ``key`` compiled to, if still stored and intact."""
        with self._lock:
            digest = self._keys.get(key)
        if digest is None:
            try:
                digest = (self.root / "keys" / key).read_text().strip()
            except OSError:
                return None
        return self.get(digest) if DIGEST_RE.fullmatch(digest) else None

    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None:
        self._obj(digest)
        write_atomic(self.root / "btf" / f"{digest}-{btf_sha}", data)
        self._account(digest, len(data))

    def get_btf(self, digest: str, btf_sha: str) -> bytes | None:
        self._obj(digest)
        try:
            return (self.root / "btf" / f"{digest}-{btf_sha}").read_bytes()
        except OSError:
            return None

    # -- the disk budget ------------------------------------------------------

    def disk_usage(self) -> int:
        """Bytes of the entries this process accounts for."""
        with self._lock:
            self._scan_locked()
            return self._disk_total

    def _scan_locked(self) -> None:
        """Account for what is already on disk, least recently modified first."""
        if self._disk is not None:
            return
        found: dict[str, list] = {}  # digest -> [mtime, bytes]
        for sub, pattern in (("objects", "*.o"), ("objects", "*.json"), ("btf", "*")):
            for path in (self.root / sub).glob(pattern):
                digest = path.name.split(".", 1)[0].split("-", 1)[0]
                if not DIGEST_RE.fullmatch(digest):
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue
                entry = found.setdefault(digest, [0.0, 0])
                entry[0] = max(entry[0], st.st_mtime)
                entry[1] += st.st_size
        for path in (self.root / "keys").glob("*"):
            try:
                digest = path.read_text().strip()
            except OSError:
                continue
            if digest in found:
                self._key_files.setdefault(digest, set()).add(path.name)
        self._disk = OrderedDict((d, e[1]) for d, e in sorted(found.items(),
                                                              key=lambda kv: kv[1][0]))
        self._disk_total = sum(self._disk.values())

    def _used(self, digest: str) -> None:
        with self._lock:
            if self._disk is not None and digest in self._disk:
                self._disk.move_to_end(digest)

    def _account(self, digest: str, size: int, *, stored: bool = False) -> None:
        """Count ``size`` more bytes for ``digest`` (``stored``: its object and
        metadata, counted once however often the same object is stored), mark
        it most recently used, and evict others until the total fits."""
        with self._lock:
            self._scan_locked()
            old = self._disk.pop(digest, None)
            added = 0 if stored and old is not None else size
            self._disk[digest] = (old or 0) + added
            self._disk_total += added
            victims = []
            while self._disk_total > self.disk_bytes and len(self._disk) > 1:
                victim, vsize = self._disk.popitem(last=False)
                self._disk_total -= vsize
                victims.append((victim, self._key_files.pop(victim, set())))
                art = self._mem.pop(victim, None)
                if art is not None:
                    self._mem_bytes -= len(art.object)
                for key in [k for k, d in self._keys.items() if d == victim]:
                    del self._keys[key]
            self.evicted += len(victims)
        for victim, keys in victims:
            self._delete(victim, keys)

    def _delete(self, digest: str, keys: set[str]) -> None:
        obj = self.root / "objects" / f"{digest}.o"
        paths = [obj, obj.with_suffix(".json"), *(self.root / "btf").glob(f"{digest}-*"),
                 *(self.root / "keys" / k for k in keys)]
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not evict %s: %s", path.name, exc)
