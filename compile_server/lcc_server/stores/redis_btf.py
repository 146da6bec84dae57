"""Kernel BTF shared by the replicas of a fleet through Redis, never evicted.

Keys (``{arch/release}`` a hash tag, so one kernel's keys share a slot)::

    lcc:btf:{<arch>/<release>}:meta            hash: sha256, size, chunks, owner, source
    lcc:btf:{<arch>/<release>}:<sha256>:<i>    the raw BTF in chunks
    lcc:btf:index                              set of "<arch>/<release>"
    lcc:btf:uploaded                           sorted set: the uploaded releases, score 0,
                                               and reservations of uploads under way,
                                               scored by when they started (the cap)

No key has a TTL, so ``volatile-lru`` never evicts them.  Each replica
registers its own kernel at start (``register_host``: source "host", owner
"host"), so a compile for that kernel works on every replica.

Races are settled in Redis: an upload writes its chunks under its own
sha256, then creates the meta hash only if absent (a script), so of two first
uploads of different BTF for one kernel, from any replicas, one is created and
the other is a ``BtfConflict``; a new release is counted against the cap by a
check-and-add script on the uploads set before its chunks are written, so
concurrent uploads never pass it.  A reservation whose upload never finished
(its replica died) is dropped once it is ``_STALE_MS`` old and the cap is
reached.

Entries carry no path.  ``materialise(arch, release)`` gives the file the
tools need: the replica's disk store's copy when its sha256 matches the
fleet's, else the fleet's copy streamed in chunks, checked against its
sha256 and installed locally first (vmlinux.h and the PCH derived from it
stay local, keyed by the BTF's digest).

While Redis is down the replica's disk store answers alone; an upload made
then is marked unsynced there and pushed when Redis answers again
(``push_unsynced``, also run at start): one that a different BTF for the same
kernel beat meanwhile is not pushed over it, but set aside on the replica's
disk, logged and counted (``lcc_btf_synced_total{result="conflict"}``).
"""

from __future__ import annotations

import hashlib
import logging
import time

from lcc_server.btf_store import (BtfConflict, BtfEntry, BtfForbidden, BtfQuotaExceeded,
                                  BtfStore as DiskBtfStore, check_btf)
from lcc_server.stores.base import StoreUnavailable
from lcc_server.stores.link import RedisLink
from lcc_server.stores.redis_artifacts import CHUNK
from lcc_server.tokens import Caller
from lcc_toolchain.errors import BtfUnavailable

__all__ = ["FleetBtfStore"]

log = logging.getLogger("lcc_server.stores")

_INDEX = "lcc:btf:index"
_UPLOADS = "lcc:btf:uploaded"
# A reservation older than this belongs to an upload that will not finish.
_STALE_MS = 60_000

# KEYS: meta; ARGV: field, value, ...  -> nil when created, else the stored sha256
_CREATE = """
local had = redis.call('hget', KEYS[1], 'sha256')
if had then return had end
redis.call('hset', KEYS[1], unpack(ARGV))
return false
"""
# KEYS: the uploads set; ARGV: "<arch>/<release>", limit (-1: none), now (ms), stale (ms)
# -> 1 counted (or already), 0 full
_RESERVE = """
if redis.call('zscore', KEYS[1], ARGV[1]) then return 1 end
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call('zcard', KEYS[1]) >= limit then
  redis.call('zremrangebyscore', KEYS[1], 1, tonumber(ARGV[3]) - tonumber(ARGV[4]))
  if redis.call('zcard', KEYS[1]) >= limit then return 0 end
end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def _meta(arch: str, release: str) -> str:
    return f"lcc:btf:{{{arch}/{release}}}:meta"


def _chunk(arch: str, release: str, sha: str, i: int) -> str:
    return f"lcc:btf:{{{arch}/{release}}}:{sha}:{i}"


def _text(meta: dict) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in meta.items()}


def _entry(arch: str, release: str, meta: dict[str, str]) -> BtfEntry:
    return BtfEntry(arch, release, meta.get("source", "upload"), meta.get("owner") or None,
                    meta.get("sha256"), int(meta.get("size", 0)))


class FleetBtfStore:
    """The fleet's BTF in Redis, materialised into ``local`` (a disk ``BtfStore``)."""

    def __init__(self, local: DiskBtfStore, link: RedisLink) -> None:
        self.local = local
        self.link = link
        self.host_arch = local.host_arch
        self.host_release = local.host_release

    # -- Redis ------------------------------------------------------------------

    def _shared_meta(self, arch: str, release: str) -> dict[str, str] | None:
        raw = self.link.run(lambda c: c.hgetall(_meta(arch, release)), "reading BTF")
        return _text(raw) if raw else None

    def _write_chunks(self, arch: str, release: str, data: bytes, sha: str) -> int:
        n = max(1, -(-len(data) // CHUNK))

        def write(c) -> None:
            for start in range(0, n, 8):  # a few chunks per round trip
                pipe = c.pipeline(transaction=False)
                for i in range(start, min(n, start + 8)):
                    pipe.set(_chunk(arch, release, sha, i), data[i * CHUNK:(i + 1) * CHUNK])
                pipe.execute()
        self.link.run(write, "storing BTF")
        return n

    def _drop_chunks(self, arch: str, release: str, sha: str, n: int) -> None:
        keys = [_chunk(arch, release, sha, i) for i in range(n)]  # one slot: one hash tag
        self.link.run(lambda c: c.delete(*keys), "removing BTF")

    def _fields(self, data: bytes, sha: str, n: int, owner: str, source: str) -> dict:
        return {"sha256": sha, "size": len(data), "chunks": n, "owner": owner,
                "source": source}

    def _create(self, arch: str, release: str, data: bytes, owner: str,
                source: str) -> str | None:
        """Store (arch, release) in Redis unless it is there: None when this call
        created it, else the stored sha256 (this call's chunks are then dropped).
        Uploads must have been counted (``_reserve``).  Raises ``StoreUnavailable``."""
        sha = hashlib.sha256(data).hexdigest()
        n = self._write_chunks(arch, release, data, sha)
        args = [x for kv in self._fields(data, sha, n, owner, source).items() for x in kv]
        had = self.link.run(lambda c: c.eval(_CREATE, 1, _meta(arch, release), *args),
                            "storing BTF")
        if had is not None:
            had = had.decode()
            if had != sha:
                self._drop_chunks(arch, release, sha, n)
            return had
        name = f"{arch}/{release}"
        self.link.run(lambda c: c.sadd(_INDEX, name), "storing BTF")
        if source == "upload":  # the reservation becomes the upload
            self.link.run(lambda c: c.zadd(_UPLOADS, {name: 0}), "storing BTF")
        return None

    def _reserve(self, arch: str, release: str) -> None:
        """Count a new upload against the cap, atomically; raises
        ``BtfQuotaExceeded``, ``StoreUnavailable``."""
        limit = self.local.max_releases
        ok = self.link.run(lambda c: c.eval(_RESERVE, 1, _UPLOADS, f"{arch}/{release}",
                                            -1 if limit is None else limit,
                                            int(time.time() * 1000), _STALE_MS),
                           "counting BTF")
        if not ok:
            raise BtfQuotaExceeded(limit)

    def _read_shared(self, arch: str, release: str, meta: dict[str, str]) -> bytes | None:
        sha = hashlib.sha256()
        parts = []
        for i in range(int(meta["chunks"])):
            part = self.link.run(lambda c, i=i: c.get(_chunk(arch, release, meta["sha256"], i)),
                                 "reading BTF")
            if part is None:
                return None
            sha.update(part)
            parts.append(part)
        if sha.hexdigest() != meta["sha256"]:
            log.warning("BTF %s/%s in Redis does not match its sha256; ignored", arch, release)
            return None
        return b"".join(parts)

    def register_host(self) -> None:
        """Publish this replica's own kernel BTF (owner "host") unless the fleet
        already has that release, then push uploads made while Redis was down;
        raises ``StoreUnavailable``."""
        if self.local.find(self.host_arch, self.host_release) is not None:
            host = self.local.read(self.host_arch, self.host_release)
            if host is not None:
                had = self._create(self.host_arch, self.host_release, host, "host", "host")
                if had is not None and had != hashlib.sha256(host).hexdigest():
                    log.warning("the fleet has a different BTF for %s/%s than this host's; "
                                "this replica compiles for its own", self.host_arch,
                                self.host_release)
        self.push_unsynced()

    def push_unsynced(self) -> None:
        """Store in Redis the uploads this replica kept while Redis was down.  One
        whose kernel got a different BTF in Redis meanwhile is set aside (the
        fleet's stays); raises ``StoreUnavailable``."""
        metrics = self.link.metrics
        for arch, release in self.local.unsynced():
            data = self.local.read(arch, release)
            if data is None:
                continue
            try:
                self._reserve(arch, release)
            except BtfQuotaExceeded:
                had = self._shared_meta(arch, release)
                if had is None:
                    log.warning("the upload of %s/%s made while the shared store was down "
                                "stays on this replica: the fleet keeps as many releases as "
                                "it may (LCC_MAX_BTF_RELEASES)", arch, release)
                    continue
                had = had.get("sha256")
            else:
                had = self._create(arch, release, data, self.local.owner(arch, release) or "",
                                   "upload")
            if had is None or had == hashlib.sha256(data).hexdigest():
                self.local.mark_synced(arch, release)
                log.info("pushed %s/%s, uploaded while the shared store was down", arch,
                         release)
                if metrics is not None:
                    metrics.btf_synced.labels("pushed").inc()
                continue
            aside = self.local.set_aside(arch, release)
            log.warning("the upload of %s/%s made while the shared store was down conflicts "
                        "with a different BTF uploaded to the fleet meanwhile (sha256 %s); "
                        "the fleet's is kept, this one was set aside in %s", arch, release,
                        had, aside)
            if metrics is not None:
                metrics.btf_synced.labels("conflict").inc()

    # -- the protocol -----------------------------------------------------------

    def find(self, arch: str, release: str) -> BtfEntry | None:
        local = self.local.find(arch, release)  # checks the names too
        if local is not None and local.source == "host":
            return local
        try:
            meta = self._shared_meta(arch, release)
        except StoreUnavailable:
            return local
        return local if meta is None else _entry(arch, release, meta)

    def materialise(self, arch: str, release: str):
        """A local, sha256-checked file of (arch, release): the disk store's when
        it matches the fleet's entry (or Redis is down, or the entry is only
        here), else the fleet's streamed into the disk store first.  Raises
        ``InvalidRequest``, ``BtfUnavailable``."""
        local = self.local.find(arch, release)
        if local is not None and local.source == "host":
            return self.local.materialise(arch, release)
        try:
            meta = self._shared_meta(arch, release)
            if (meta is not None and local is not None and local.sha256 != meta.get("sha256")
                    and self.local.is_unsynced(arch, release)):
                # kept while Redis was down and not pushed yet (by another process on
                # this state directory, say): push or set it aside before replacing it
                self.push_unsynced()
                local = self.local.find(arch, release)
            if meta is not None and (local is None or local.sha256 != meta.get("sha256")):
                data = self._read_shared(arch, release, meta)
                if data is None:
                    raise BtfUnavailable(f"the fleet's BTF of {arch}/{release} is incomplete "
                                         "or damaged in the shared store; upload it again")
                self.local.install(arch, release, data, meta.get("owner") or None)
        except StoreUnavailable:
            pass
        return self.local.materialise(arch, release)

    def read(self, arch: str, release: str) -> bytes | None:
        if self.find(arch, release) is None:
            return None
        return self.materialise(arch, release).read_bytes()

    def owner(self, arch: str, release: str) -> str | None:
        try:
            meta = self._shared_meta(arch, release)
        except StoreUnavailable:
            meta = None
        return meta.get("owner") or None if meta else self.local.owner(arch, release)

    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None) -> tuple[BtfEntry, bool]:
        """As the disk store's ``put``, fleet-wide: conflicts, ownership and the
        cap are judged against what Redis holds, atomically.  While Redis is
        down the upload is kept here, unsynced, and pushed when it answers."""
        local = self.local.find(arch, release)
        check_btf(data)
        if local is not None and local.source == "host":
            return self.local.put(arch, release, data, replace=replace, caller=caller)
        try:
            return self._put_shared(arch, release, data, replace, caller)
        except StoreUnavailable:
            return self.local.put(arch, release, data, replace=replace, caller=caller,
                                  unsynced=True)

    def _put_shared(self, arch: str, release: str, data: bytes, replace: bool,
                    caller: Caller | None) -> tuple[BtfEntry, bool]:
        sha = hashlib.sha256(data).hexdigest()
        owner = caller.name if caller is not None else None
        meta = self._shared_meta(arch, release)
        if meta is None:
            self._reserve(arch, release)
            had = self._create(arch, release, data, owner or "", "upload")
            if had is None:
                self.local.install(arch, release, data, owner)
                return BtfEntry(arch, release, "upload", owner, sha, len(data)), True
            meta = self._shared_meta(arch, release) or {"sha256": had}
        if meta.get("sha256") == sha:
            self.local.install(arch, release, data, meta.get("owner") or None)
            return _entry(arch, release, meta), False
        if meta.get("source") == "host":
            raise BtfConflict(f"{arch}/{release} is the kernel of a replica of this "
                              "fleet; its BTF cannot be replaced")
        if not replace:
            raise BtfConflict(f"a different BTF is stored for {arch}/{release}; "
                              "pass replace=true to overwrite it")
        had = meta.get("owner") or None
        if caller is not None and not caller.admin and had != caller.name:
            raise BtfForbidden(f"{arch}/{release} was uploaded by "
                               f"{had or 'an earlier version of the service'}; only "
                               "that token or an admin may replace it")
        n = self._write_chunks(arch, release, data, sha)
        self.link.run(lambda c: c.hset(_meta(arch, release), mapping=self._fields(
            data, sha, n, owner or "", "upload")), "storing BTF")
        if meta.get("chunks"):
            self._drop_chunks(arch, release, meta["sha256"], int(meta["chunks"]))
        self.local.install(arch, release, data, owner)
        return BtfEntry(arch, release, "upload", owner, sha, len(data)), True

    def remove(self, arch: str, release: str) -> None:
        self.local.remove(arch, release)
        try:
            meta = self._shared_meta(arch, release)
            self.link.run(lambda c: (c.delete(_meta(arch, release)),
                                     c.srem(_INDEX, f"{arch}/{release}"),
                                     c.zrem(_UPLOADS, f"{arch}/{release}")), "removing BTF")
            if meta and meta.get("chunks"):
                self._drop_chunks(arch, release, meta["sha256"], int(meta["chunks"]))
        except StoreUnavailable:
            pass

    def upload_count(self) -> int:
        """Releases uploaded to the fleet (this replica's alone while degraded)."""
        try:
            return self.link.run(lambda c: c.zcard(_UPLOADS), "counting BTF")
        except StoreUnavailable:
            return self.local.upload_count()

    def entries(self) -> list[BtfEntry]:
        """The fleet's kernels (this host's first), without materialising them."""
        try:
            names = sorted(n.decode() for n in self.link.run(lambda c: c.smembers(_INDEX),
                                                               "listing BTF"))
            metas = [(n, self._shared_meta(*n.split("/", 1))) for n in names]
        except StoreUnavailable:
            return self.local.entries()
        out = [e for e in self.local.entries() if e.source == "host"]
        for name, meta in metas:
            arch, release = name.split("/", 1)
            if meta is None or any((e.arch, e.release) == (arch, release) for e in out):
                continue
            out.append(_entry(arch, release, meta))
        return out
