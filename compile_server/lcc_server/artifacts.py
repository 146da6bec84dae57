"""Compiled objects on disk, addressed by content, and the request -> digest index.

Layout under the root::

    objects/<digest>.o            the object; <digest> is its sha256
    objects/<digest>.json         toolchain, warnings, programs, maps; seal
    keys/<request key>            the digest a request key compiled to; seal
    btf/<digest>-<btf sha>        BTF tailored to that object for that kernel
    btf/<digest>-<btf sha>.seal   its sha256; seal

Every file is written to a temporary name and renamed, so readers in other
threads or processes never see half a file.  ``get`` checks the object's
sha256 when it reads it from disk and drops an entry that does not match
(disk corruption, tampering), so a caller compiles again instead of serving
it.  An entry deleted from disk is forgotten from memory too.

What the service says about an object comes from the records beside it,
and those are *sealed*: the seal (``<key id> <signature>``) signs a
statement made of the record's content *and* its place (the object's digest
and size, the request key, the kernel BTF), with the service's key
(``lcc_server.signing``; the current or a retired one).  A record read from
disk whose seal does not verify (an edited warning list or map summary, a
request key pointed at another object, metadata or BTF moved to another
object) is logged as a warning and dropped with what it describes, and the
object is compiled again when next asked for; it is never served.  A store
made without keys (``keys=None``, for tests and tools) writes no seals.

The files of all entries are kept under ``disk_bytes`` (less what
``reserved()`` reports for the rest of the state directory: the BTF uploads,
so that one budget covers them all):
after each store the least recently used entries (object, metadata, tailored
BTF and the request keys that led to them, or a kernel's derived files) are deleted until the total fits,
so a stream of unique requests cannot fill the disk.  A request whose entry
was evicted is simply compiled again.  A kernel's derived files (vmlinux.h,
its index and cuts, its PCHs; ``lcc_server.derived``) are entries of the same
ledger, evicted in the same order unless a compile holds them (``pinned``).  The accounting is a ledger shared by
every process on the directory (``lcc_server.ledger``), so the worker
processes of one service keep one budget between them, not one each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lcc_server.ledger import DERIVED, Ledger
from lcc_server.signing import KeyRing, canonical
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.errors import Diagnostic
from lcc_toolchain.validation import DIGEST_RE

__all__ = ["Artifact", "ArtifactStore", "Hit", "seal_statement", "seal_verifies"]

log = logging.getLogger("lcc_server.artifacts")

#: ``format`` of the sealed records beside the objects.
ARTIFACT_RECORD = "lcc-artifact/1"
REQUEST_RECORD = "lcc-request/1"
BTF_RECORD = "lcc-btf/1"


@dataclass
class Artifact:
    """A stored object with what was said about it when it was compiled."""

    digest: str
    object: bytes
    toolchain: dict = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    programs: list[dict] = field(default_factory=list)
    maps: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    """A stored artifact and the tier that answered: ``memory`` (this process),
    ``disk`` (this host's disk) or ``store`` (the fleet's shared store)."""

    artifact: Artifact
    tier: str


class ArtifactStore:
    """Content-addressed objects; safe for concurrent threads and processes.

    The most recently used artifacts (up to ``memory_bytes`` of objects) and
    request keys are also kept in memory, so a cache hit reads no file.  On
    disk, entries are evicted least recently used first beyond ``disk_bytes``.
    ``keys`` seal the records written and check those read (module docstring).
    """

    def __init__(self, root: Path, *, memory_bytes: int = 64 << 20,
                 disk_bytes: int = 2 << 30, keys: KeyRing | None = None,
                 reserved: Callable[[], int] | None = None) -> None:
        self.root = Path(root)
        self.keys = keys
        self._budget = memory_bytes
        self._mem: OrderedDict[str, Artifact] = OrderedDict()
        self._mem_bytes = 0
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.disk_bytes = disk_bytes
        self.reserved = reserved
        self.evicted = 0  # entries this process deleted to stay under disk_bytes
        self._ledger: Ledger | None = None
        #: deletes a derived file set the budget evicted (``lcc_server.derived``)
        self.evict_derived: Callable[[str], None] | None = None

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

    def object_path(self, digest: str) -> Path:
        """Where the object of ``digest`` is kept (evicted ones are gone)."""
        return self._obj(digest)

    def put(self, art: Artifact) -> None:
        """Store ``art`` (its digest must be the object's sha256)."""
        if hashlib.sha256(art.object).hexdigest() != art.digest:
            raise ValueError("artifact digest does not match its object")
        meta = {"toolchain": art.toolchain, "warnings": [w.to_dict() for w in art.warnings],
                "programs": art.programs, "maps": art.maps}
        obj = self._obj(art.digest)
        seal = self._seal(_artifact_statement(art.digest, len(art.object), meta))
        meta_bytes = json.dumps({**meta, **({"seal": seal} if seal else {})},
                                sort_keys=True).encode()
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
            record = obj.with_suffix(".json").read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            log.warning("artifact %s: the object's sha256 does not match its name; dropped",
                        digest[:16])
            self._forget(digest)
            return None
        try:
            meta = json.loads(record)
            seal = meta.pop("seal", None)
            if not self._sealed(_artifact_statement(digest, len(data), meta), seal):
                raise ValueError("its seal does not verify")
            art = Artifact(digest=digest, object=data, toolchain=dict(meta["toolchain"]),
                           warnings=[Diagnostic.from_dict(w) for w in meta["warnings"]],
                           programs=list(meta["programs"]), maps=list(meta["maps"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("artifact %s: its metadata (%s) is refused: %s (edited on disk, or "
                        "signed by a key this service does not hold); dropped, it is compiled "
                        "again when asked for", digest[:16], obj.with_suffix(".json"), e)
            self._forget(digest)
            return None
        self._remember_in_memory(art)
        self._used(digest)
        with contextlib.suppress(OSError):  # so that a restart sees it as recent
            os.utime(obj)
        return art

    def remember(self, key: str, digest: str) -> None:
        """Record that request ``key`` compiled to ``digest``."""
        self._obj(digest)
        seal = self._seal(_request_statement(key, digest))
        record = f"{digest}\n{seal}".rstrip().encode()
        write_atomic(self.root / "keys" / key, record)
        with self._lock:
            self._keys[key] = digest
            while len(self._keys) > 4096:
                self._keys.popitem(last=False)
        self._ledger_ready().add_key(key, digest, len(record))

    def lookup(self, key: str) -> Artifact | None:
        """The artifact request ``key`` compiled to, if still stored and intact."""
        with self._lock:
            digest = self._keys.get(key)
        if digest is None:
            path = self.root / "keys" / key
            try:
                record = path.read_bytes()
            except OSError:
                return None
            digest, _, seal = record.decode(errors="replace").strip().partition("\n")
            if not DIGEST_RE.fullmatch(digest) \
                    or not self._sealed(_request_statement(key, digest), seal or None):
                log.warning("request key %s: its record is refused (edited on disk, or signed "
                            "by a key this service does not hold); dropped", key[:16])
                path.unlink(missing_ok=True)
                return None
        return self.get(digest) if DIGEST_RE.fullmatch(digest) else None

    def find(self, key: str) -> Hit | None:
        """Like :meth:`lookup`, saying whether memory or the disk answered."""
        with self._lock:
            digest = self._keys.get(key)
            in_memory = digest is not None and digest in self._mem
        art = self.lookup(key)
        return None if art is None else Hit(art, "memory" if in_memory else "disk")

    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None:
        """Keep ``data``, BTF tailored to object ``digest`` for the kernel BTF ``btf_sha``."""
        self._obj(digest)
        path = self.root / "btf" / f"{digest}-{btf_sha}"
        statement = _btf_statement(digest, btf_sha, data)
        record = f"{statement['btf']['sha256']}\n{self._seal(statement)}".rstrip().encode()
        write_atomic(path, data)
        write_atomic(path.with_name(path.name + ".seal"), record)
        self._account(digest, len(data) + len(record))

    def get_btf(self, digest: str, btf_sha: str) -> bytes | None:
        """The tailored BTF kept by :meth:`put_btf`, or None (absent, or refused and dropped)."""
        self._obj(digest)
        path = self.root / "btf" / f"{digest}-{btf_sha}"
        record_path = path.with_name(path.name + ".seal")
        try:
            data = path.read_bytes()
            record = record_path.read_bytes()
        except OSError:
            return None
        statement = _btf_statement(digest, btf_sha, data)
        sha, _, seal = record.decode(errors="replace").strip().partition("\n")
        if sha != statement["btf"]["sha256"] or not self._sealed(statement, seal or None):
            log.warning("tailored BTF %s: its record is refused (edited on disk, or signed by a "
                        "key this service does not hold); dropped, it is made again",
                        path.name[:40])
            for p in (path, record_path):
                p.unlink(missing_ok=True)
            return None
        return data

    # -- seals ------------------------------------------------------------------

    def _seal(self, statement: dict) -> str:
        return seal_statement(self.keys, statement)

    def _sealed(self, statement: dict, seal: object) -> bool:
        return seal_verifies(self.keys, statement, seal)

    def _forget(self, digest: str) -> None:
        """Delete object ``digest`` and its metadata, in memory and on disk."""
        with self._lock:
            art = self._mem.pop(digest, None)
            if art is not None:
                self._mem_bytes -= len(art.object)
        self._ledger_ready().forget(digest)
        obj = self._obj(digest)
        for path in (obj, obj.with_suffix(".json")):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete %s: %s", path.name, exc)

    # -- the disk budget ------------------------------------------------------

    def disk_usage(self) -> int:
        """Bytes of the entries on disk (all processes sharing the directory),
        without the derived per-kernel files (:meth:`put_derived`)."""
        return self._ledger_ready().total(derived=False)

    # -- derived per-kernel files, in the same budget -------------------------

    def derived_usage(self) -> int:
        """Bytes of the derived per-kernel file sets counted in the ledger."""
        return self._ledger_ready().total(derived=True)

    def put_derived(self, name: str, size: int) -> None:
        """Count ``size`` bytes for ``name`` (``ledger.DERIVED`` + the kernel
        BTF's sha256), mark it most recently used, and evict until the total fits;
        a derived victim is handed to ``evict_derived``."""
        self._evict(self._ledger_ready().put(name, size, budget=self.budget()))

    @contextlib.contextmanager
    def pinned(self, name: str) -> Iterator[None]:
        """Keep entry ``name`` from eviction (by any process) while inside."""
        ledger = self._ledger_ready()
        ledger.pin(name)
        try:
            yield
        finally:
            ledger.unpin(name)

    def budget(self) -> int:
        """Bytes the entries may use now: ``disk_bytes`` less ``reserved()``."""
        if self.reserved is None:
            return self.disk_bytes
        return max(0, self.disk_bytes - self.reserved())

    def close(self) -> None:
        """Close the ledger's database (a later use opens it again)."""
        with self._lock:
            ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.close()

    def _ledger_ready(self) -> Ledger:
        with self._lock:
            if self._ledger is None:
                ledger = Ledger(self.root / "ledger.sqlite")
                ledger.fill_once(self._scan)
                self._ledger = ledger
            return self._ledger

    def _scan(self) -> tuple[list[tuple[str, int, float]], list[tuple[str, str]]]:
        """What is already on disk: (digest, bytes, mtime) and (request key, digest)."""
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
        keys = []
        for path in (self.root / "keys").glob("*"):
            try:
                digest = path.read_text(errors="replace").split("\n", 1)[0].strip()
            except OSError:
                continue
            if digest in found:
                keys.append((path.name, digest))
                with contextlib.suppress(OSError):
                    found[digest][1] += path.stat().st_size
        return [(d, e[1], e[0]) for d, e in found.items()], keys

    def _used(self, digest: str) -> None:
        self._ledger_ready().touch(digest)

    def _account(self, digest: str, size: int, *, stored: bool = False) -> None:
        """Count ``size`` more bytes for ``digest`` (``stored``: its object and
        metadata, counted once however often the same object is stored), mark
        it most recently used, and evict others until the total fits."""
        self._evict(self._ledger_ready().add(digest, size, stored=stored,
                                             budget=self.budget()))

    def _evict(self, victims: list[tuple[str, list[str]]]) -> None:
        derived = [v for v, _ in victims if v.startswith(DERIVED)]
        victims = [(v, k) for v, k in victims if not v.startswith(DERIVED)]
        for name in derived:
            if self.evict_derived is not None:
                self.evict_derived(name)
        with self._lock:
            for victim, _ in victims:
                art = self._mem.pop(victim, None)
                if art is not None:
                    self._mem_bytes -= len(art.object)
                for key in [k for k, d in self._keys.items() if d == victim]:
                    del self._keys[key]
            self.evicted += len(victims)
        for victim, keys in victims:
            self._delete(victim, set(keys))

    def _delete(self, digest: str, keys: set[str]) -> None:
        obj = self.root / "objects" / f"{digest}.o"
        paths = [obj, obj.with_suffix(".json"), *(self.root / "btf").glob(f"{digest}-*"),
                 *(self.root / "keys" / k for k in keys)]
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not evict %s: %s", path.name, exc)



def seal_statement(keys: KeyRing | None, statement: dict) -> str:
    """``<key id> <signature>`` of ``statement``, or "" without keys."""
    if keys is None:
        return ""
    return f"{keys.key_id} {keys.sign(canonical(statement))}"


def seal_verifies(keys: KeyRing | None, statement: dict, seal: object) -> bool:
    """Whether ``seal`` signs ``statement`` with a key of ``keys`` (always true
    without keys)."""
    if keys is None:
        return True
    if not isinstance(seal, str):
        return False
    key_id, _, signature = seal.partition(" ")
    try:
        return keys.verify(canonical(statement), key_id, signature)
    except (TypeError, ValueError):  # not JSON-able: not what was written
        return False


# What a seal signs: a record's content together with where it belongs, so
# that moving a record (or its object) elsewhere breaks the seal as well.

def _artifact_statement(digest: str, size: int, meta: dict) -> dict:
    return {"format": ARTIFACT_RECORD, "object": {"sha256": digest, "size": size}, **meta}


def _request_statement(key: str, digest: str) -> dict:
    return {"format": REQUEST_RECORD, "request_key": key, "object": digest}


def _btf_statement(digest: str, btf_sha: str, data: bytes) -> dict:
    return {"format": BTF_RECORD, "object": digest, "kernel_btf": btf_sha,
            "btf": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
