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
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from lcc.errors import Diagnostic
from lcc_server.atomic import write_atomic
from lcc_server.validation import DIGEST_RE

__all__ = ["Artifact", "ArtifactStore"]


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
    request keys are also kept in memory, so a cache hit reads no file.
    """

    def __init__(self, root: Path, *, memory_bytes: int = 64 << 20) -> None:
        self.root = Path(root)
        self._budget = memory_bytes
        self._mem: OrderedDict[str, Artifact] = OrderedDict()
        self._mem_bytes = 0
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

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
        if not DIGEST_RE.match(digest):
            raise ValueError(f"bad digest {digest[:70]!r}")
        return self.root / "objects" / f"{digest}.o"

    def put(self, art: Artifact) -> None:
        """Store ``art`` (its digest must be the object's sha256)."""
        if hashlib.sha256(art.object).hexdigest() != art.digest:
            raise ValueError("artifact digest does not match its object")
        meta = {"toolchain": art.toolchain, "warnings": [w.to_dict() for w in art.warnings],
                "programs": art.programs, "maps": art.maps}
        obj = self._obj(art.digest)
        write_atomic(obj.with_suffix(".json"), json.dumps(meta, sort_keys=True).encode())
        write_atomic(obj, art.object)
        self._remember_in_memory(art)

    def get(self, digest: str) -> Artifact | None:
        """The artifact, or None when absent or corrupt (a corrupt one is deleted)."""
        obj = self._obj(digest)
        with self._lock:
            art = self._mem.get(digest)
            if art is not None:
                self._mem.move_to_end(digest)
        if art is not None and obj.exists():
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
        return art

    def remember(self, key: str, digest: str) -> None:
        """Record that request ``key`` compiled to ``digest``."""
        self._obj(digest)
        write_atomic(self.root / "keys" / key, digest.encode())
        with self._lock:
            self._keys[key] = digest
            while len(self._keys) > 4096:
                self._keys.popitem(last=False)

    def lookup(self, key: str) -> Artifact | None:
        """The artifact request ``key`` compiled to, if still stored and intact."""
        with self._lock:
            digest = self._keys.get(key)
        if digest is None:
            try:
                digest = (self.root / "keys" / key).read_text().strip()
            except OSError:
                return None
        return self.get(digest) if DIGEST_RE.match(digest) else None

    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None:
        self._obj(digest)
        write_atomic(self.root / "btf" / f"{digest}-{btf_sha}", data)

    def get_btf(self, digest: str, btf_sha: str) -> bytes | None:
        self._obj(digest)
        try:
            return (self.root / "btf" / f"{digest}-{btf_sha}").read_bytes()
        except OSError:
            return None
