"""The client's content-addressed artifact cache, and the backend wrapper that uses it.

Compiled objects (and tailored BTF) are kept in the user's cache directory
(``platformdirs.user_cache_dir("lcc")``, or ``LCC_CACHE_DIR``) so that a tool
starting again compiles nothing and contacts nobody.
:class:`CachedBackend` puts the cache in front of any backend.  Layout under
``<root>/artifacts/v1``::

    keys/<kk>/<key>.json     what a cache key maps to (object/BTF sha256, metadata)
    blobs/<bb>/<sha256>.o    an object, named by the sha256 of its bytes
    blobs/<bb>/<sha256>.btf  tailored BTF, likewise
    locks/<key>.lock         flock(2) held while one process fills that key

``<root>/toolchain`` is the embedded toolchain's work directory (vmlinux.h
and precompiled headers), see :mod:`lcc.compile.local`.

Guarantees:

- every file is written to a temporary name and renamed into place
  (``os.replace``), so readers see a whole entry or none (no fsync: a file
  cut short by a crash fails verification like any other damage);
- reads verify each blob against its sha256; a corrupt or partial entry is
  logged, dropped and reported as a miss, so the caller compiles or fetches
  it again;
- an entry made by a compile service keeps the service's signed manifest
  (its text, signature and key), and :class:`CachedBackend` checks it again
  on every read, as when it arrived (:mod:`lcc.compile.trust`): signed by a
  key trusted *now*, naming these very blobs and this request.  So an entry
  rewritten consistently (a new blob and a key file naming it), or copied
  from another request, or signed by a key since unpinned, is dropped and
  built again, never loaded;
- :meth:`ArtifactCache.lock` serialises the filling of one key across
  processes (single flight), so N processes starting the same tool compile
  it once.

The key (:func:`artifact_key`) is a sha256 over everything that decides
the object: the bundle digest, the defines, arch, kernel release, the
kernel's BTF identity (when compiling for the running kernel, see
:mod:`lcc.compile.kernel`) and the backend's ``key_part()``: the local
toolchain's identity (clang/bpftool versions, header hashes), or the
service's URL (its toolchain is unknown before asking; what it sends is
checked against its signed manifest, and a cache hit contacts nobody), or
the Docker image name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import write_atomic
from ..errors import CacheError, Diagnostic, UntrustedArtifact
from . import kernel as _kernel
from .artifact import Artifact
from .config import ClientConfig

if TYPE_CHECKING:
    from .backends import Backend
    from .bundle import Bundle

__all__ = ["ArtifactCache", "CacheEntry", "CachedBackend", "artifact_key", "cache_key",
           "default_dir", "private_tmp_dir", "spill_btf"]

log = logging.getLogger(__name__)

FORMAT = "v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def default_dir(config: ClientConfig | None = None) -> Path:
    """``config.cache_dir`` (default config: ``LCC_CACHE_DIR``) if set, else the
    user's cache directory for lcc."""
    cache_dir = (config if config is not None else ClientConfig.from_env()).cache_dir
    if cache_dir is not None:
        return cache_dir
    import platformdirs  # lazy: only needed without LCC_CACHE_DIR (start-up speed)
    return Path(platformdirs.user_cache_dir("lcc"))


def cache_key(**parts: Any) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (any JSON-able values).

    Equal inputs give equal keys in every process and Python version; a
    change in any part gives a different key.
    """
    blob = json.dumps({"format": FORMAT, **parts}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def artifact_key(bundle: Bundle, *, defines: Mapping[str, str | None], arch: str, kernel: str,
                 kernel_btf: str | None, via: Mapping[str, Any]) -> str:
    """The cache key of an artifact: everything that decides the object (module docstring).

    ``kernel_btf`` is the kernel's BTF identity when known (the running
    kernel's), ``via`` names where it is compiled (a backend's ``key_part()``:
    ``{"local": identity}``, ``{"server": url}``, ``{"docker": image}``).
    """
    return cache_key(bundle=bundle.digest(), defines=sorted(defines.items()), arch=arch,
                     kernel=kernel, kernel_btf=kernel_btf, via=dict(via))


@dataclass
class CacheEntry:
    """One cached artifact: what the key maps to, with the verified bytes when read."""

    key: str
    meta: dict
    object: bytes = b""
    btf: bytes | None = None
    btf_path: Path | None = None
    object_path: Path | None = None
    size: int = 0  # bytes on disk (object + BTF)

    @property
    def digest(self) -> str:
        return self.meta["object"]

    @property
    def created(self) -> float:
        return float(self.meta.get("created", 0))


class ArtifactCache:
    """The artifact cache rooted at ``root`` (default :func:`default_dir`).

    Safe for concurrent use by threads and processes.  ``put`` raises
    :class:`CacheError` when the directory cannot be written; ``get`` never
    raises for a damaged entry (it is dropped and reported as a miss).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_dir()
        self.base = self.root / "artifacts" / FORMAT

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------

    @property
    def toolchain_dir(self) -> Path:
        """Work directory of the embedded toolchain (vmlinux.h, PCH)."""
        return self.root / "toolchain"

    def _key_path(self, key: str) -> Path:
        _check_hex(key, "cache key")
        return self.base / "keys" / key[:2] / f"{key}.json"

    def blob_path(self, sha: str, kind: str) -> Path:
        """Where the blob with this sha256 lives (``kind``: ``o`` or ``btf``)."""
        _check_hex(sha, "blob digest")
        return self.base / "blobs" / sha[:2] / f"{sha}.{kind}"

    # -- reading ------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` with its bytes verified, or None (miss).

        A damaged entry (unreadable metadata, a missing blob or one whose
        sha256 differs from its name) is logged, removed and counted as a miss.
        """
        path = self._key_path(key)
        try:
            raw = path.read_bytes()
        except OSError as e:
            if not isinstance(e, (FileNotFoundError, NotADirectoryError)):
                log.debug("cache entry %s cannot be read: %s", key[:16], e)
            return None
        try:
            meta = json.loads(raw.decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise ValueError("metadata names another key")
            obj_sha = meta["object"]
            btf_sha = meta.get("btf")
        except (ValueError, KeyError, TypeError) as e:
            self._drop(key, f"unreadable metadata ({e})")
            return None
        try:
            obj_path = self.blob_path(obj_sha, "o")
            obj = _read_verified(obj_path, obj_sha)
            btf = btf_path = None
            if btf_sha:
                btf_path = self.blob_path(btf_sha, "btf")
                btf = _read_verified(btf_path, btf_sha)
        except _Damaged as e:
            self._drop(key, e.why, e.path)
            return None
        except CacheError as e:  # metadata names a malformed digest
            self._drop(key, str(e))
            return None
        return CacheEntry(key=key, meta=meta, object=obj, btf=btf, btf_path=btf_path,
                          object_path=obj_path, size=len(obj) + len(btf or b""))

    def discard(self, key: str, why: str) -> None:
        """Forget ``key`` because its entry cannot be used (``why``, logged as a
        warning); its blobs stay, other keys may name them."""
        log.warning("cache entry %s is refused (%s); dropping it", key[:16], why)
        self.remove(key)

    def _drop(self, key: str, why: str, blob: Path | None = None) -> None:
        log.warning("cache entry %s is damaged (%s); dropping it", key[:16], why)
        for p in (self._key_path(key), blob):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()

    # -- writing ------------------------------------------------------------------

    def put(self, key: str, obj: bytes, *, btf: bytes | None = None,
            meta: Mapping[str, Any] | None = None) -> CacheEntry:
        """Store ``obj`` (and ``btf``) under ``key``; returns the stored entry.

        ``meta`` is kept alongside (JSON-able: origin, warnings, toolchain...).
        Raises :class:`CacheError` when the cache cannot be written.
        """
        obj_sha = hashlib.sha256(obj).hexdigest()
        btf_sha = hashlib.sha256(btf).hexdigest() if btf is not None else None
        record = {**dict(meta or {}), "key": key, "object": obj_sha, "btf": btf_sha,
                  "size": len(obj) + len(btf or b""), "created": time.time()}
        try:
            obj_path = self._put_blob(obj, obj_sha, "o")
            btf_path = self._put_blob(btf, btf_sha, "btf") if btf is not None else None
            write_atomic(self._key_path(key),
                          json.dumps(record, sort_keys=True, indent=1).encode())
        except OSError as e:
            raise CacheError(f"cannot write the artifact cache at {self.root}: "
                             f"{e.strerror or e}",
                             hint="set LCC_CACHE_DIR to a writable directory") from None
        return CacheEntry(key=key, meta=record, object=obj, btf=btf, btf_path=btf_path,
                          object_path=obj_path, size=record["size"])

    def _put_blob(self, data: bytes, sha: str, kind: str) -> Path:
        path = self.blob_path(sha, kind)
        try:
            if path.stat().st_size == len(data) and _sha256_file(path) == sha:
                return path  # content-addressed: already there
        except OSError:
            pass
        write_atomic(path, data)
        return path

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the cross-process lock of ``key`` (flock); others wait.

        Without a writable cache directory it degrades to no locking.
        """
        path = self.base / "locks" / f"{key}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            log.debug("no cache lock for %s: %s", key[:16], e)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- listing and cleaning -------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Every readable entry's metadata (bytes not loaded), oldest first."""
        out = []
        keys = self.base / "keys"
        if not keys.is_dir():
            return out
        for path in keys.glob("*/*.json"):
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
                out.append(CacheEntry(key=meta["key"], meta=meta, size=int(meta.get("size", 0))))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(out, key=lambda e: e.created)

    def remove(self, key: str) -> bool:
        """Forget ``key`` (its blobs stay while other keys may share them)."""
        try:
            self._key_path(key).unlink()
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False

    def clear(self, *, toolchain: bool = False) -> tuple[int, int]:
        """Remove every entry (and, with ``toolchain``, the header caches).

        Returns (entries removed, bytes freed).  Raises :class:`CacheError`.
        """
        entries = self.entries()
        freed = _tree_size(self.base)
        try:
            if self.base.exists():
                # Rename first so that readers never see a half-deleted tree.
                trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
                os.replace(self.base, trash / "v")
                shutil.rmtree(trash)
            if toolchain and self.toolchain_dir.exists():
                freed += _tree_size(self.toolchain_dir)
                shutil.rmtree(self.toolchain_dir)
        except OSError as e:
            raise CacheError(f"cannot clear the cache at {self.root}: {e.strerror or e}") from None
        return len(entries), freed


class CachedBackend:
    """``inner`` (any :class:`lcc.compile.Backend`) with its results kept in ``store``.

    It is a backend itself: same ``name``, ``origin``, ``key_part()`` and
    ``trust``.  :meth:`compile` answers from the cache when it can (``inner``
    is not called, nobody is contacted: ``Artifact.cache_hit``), else
    compiles once per key across processes (:meth:`ArtifactCache.lock`) and
    stores the result.  When ``inner`` has a ``trust`` policy (a compile
    service: :class:`lcc.compile.trust.TrustPolicy`), every hit is checked
    against the signed manifest stored with it first (module docstring);
    one that fails is dropped and compiled again.  When the cache cannot be written it logs a warning and returns
    the compiled artifact anyway.  The returned artifact's ``btf_path`` names
    a file holding its BTF, if any.
    """

    def __init__(self, inner: Backend, store: ArtifactCache) -> None:
        self.inner = inner
        self.store = store

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, {self.store!r})"

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def origin(self) -> str:
        return self.inner.origin

    def key_part(self) -> dict:
        return self.inner.key_part()

    @property
    def trust(self):
        return getattr(self.inner, "trust", None)

    def key(self, bundle: Bundle, *, kernel: str, arch: str,
            defines: Mapping[str, str | None]) -> str:
        """The cache key ``compile`` with these arguments uses."""
        me = _kernel.this_kernel()
        btf_id = me.btf_id if (kernel, arch) == (me.release, me.arch) else None
        return artifact_key(bundle, defines=defines, arch=arch, kernel=kernel,
                            kernel_btf=btf_id, via=self.key_part())

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        key = self.key(bundle, kernel=kernel, arch=arch, defines=defines)
        expect = (bundle, kernel, arch, defines)
        hit = self._lookup(key, btf, expect)
        if hit is not None:
            return hit
        with self.store.lock(key):
            hit = self._lookup(key, btf, expect)  # another process may have filled it meanwhile
            if hit is not None:
                return hit
            art = self.inner.compile(bundle, kernel=kernel, arch=arch, defines=defines, btf=btf)
            art.key = key
            meta = {"origin": art.origin, "main": bundle.main, "kernel": kernel, "arch": arch,
                    "defines": defines, "warnings": [w.to_dict() for w in art.warnings],
                    "toolchain": art.toolchain}
            if art.manifest is not None:
                meta.update(manifest=art.manifest, signature=art.signature, key_id=art.key_id)
            try:
                entry = self.store.put(key, art.object, btf=art.btf, meta=meta)
            except CacheError as e:
                log.warning("%s; continuing without the cache", e)
                if art.btf is not None:
                    art.btf_path = str(spill_btf(art.btf))
                return art
        if entry.btf_path is not None:
            art.btf_path = str(entry.btf_path)
        log.debug("compiled %s (%s) via %s: %s", bundle.main, key[:16], art.origin, art.digest)
        return art

    def _lookup(self, key: str, need_btf: bool, expect: tuple) -> Artifact | None:
        entry = self.store.get(key)
        if entry is None or (need_btf and entry.btf is None):
            return None
        if self.trust is not None:
            return self._checked(entry, expect)
        log.debug("cache hit %s: %s", key[:16], entry.digest)
        meta = entry.meta
        return Artifact(object=entry.object, digest=entry.digest, btf=entry.btf,
                        warnings=[Diagnostic.from_dict(d) for d in meta.get("warnings") or []],
                        toolchain=dict(meta.get("toolchain") or {}), cached=True,
                        btf_path=str(entry.btf_path) if entry.btf_path else None,
                        origin=str(meta.get("origin", "")), cache_hit=True, key=entry.key)

    def _checked(self, entry: CacheEntry, expect: tuple) -> Artifact | None:
        """The artifact of a compile service's ``entry`` once its manifest passes the
        checks of :mod:`lcc.compile.trust` again; else None, and it is dropped."""
        from .trust import artifact_from_manifest, check_manifest, expected_request
        bundle, kernel, arch, defines = expect
        meta, origin = entry.meta, self.inner.origin
        try:
            manifest = self.trust.open(origin, meta.get("manifest"), meta.get("signature"),
                                       meta.get("key_id"))
            check_manifest(manifest, origin=origin, obj=entry.object, btf=entry.btf,
                           request=expected_request(bundle, kernel=kernel, arch=arch,
                                                    defines=defines))
            art = artifact_from_manifest(manifest, obj=entry.object, btf=entry.btf,
                                         origin=origin, text=meta["manifest"],
                                         signature=meta.get("signature"),
                                         key_id=meta.get("key_id"), cached=True)
        except UntrustedArtifact as e:
            self.store.discard(entry.key, e.message)
            return None
        log.debug("cache hit %s: %s (signed by %s)", entry.key[:16], entry.digest,
                  art.key_id)
        art.cache_hit, art.key = True, entry.key
        art.btf_path = str(entry.btf_path) if entry.btf_path else None
        return art


def private_tmp_dir(prefix: str) -> Path:
    """``$TMPDIR/<prefix>-<uid>``, mode 0700 and ours, else a fresh ``mkdtemp``."""
    d = Path(tempfile.gettempdir()) / f"{prefix}-{os.geteuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.lstat()
        if st.st_uid == os.geteuid() and d.is_dir() and not d.is_symlink() \
                and st.st_mode & 0o077 == 0:
            return d
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-"))


def spill_btf(data: bytes) -> Path:
    """Tailored BTF in a private temporary file named by its sha256 (for an artifact
    that is not in the cache)."""
    d = private_tmp_dir("lcc-btf")
    path = d / f"{hashlib.sha256(data).hexdigest()}.btf"
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data, mode=0o600)
    return path


def _check_hex(value: str, what: str) -> None:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise CacheError(f"{what} {value!r:.20} is not a sha256 hex digest")


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Damaged(Exception):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(why)
        self.path = path
        self.why = why


def _read_verified(path: Path, sha: str) -> bytes:
    """The blob's bytes; raises ``_Damaged`` when missing or not matching ``sha``."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _Damaged(path, f"{path.name}: {e.strerror}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise _Damaged(path, f"{path.name} has sha256 {got[:16]}..., not {sha[:16]}...")
    return data



def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return total
