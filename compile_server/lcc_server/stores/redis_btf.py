"""Kernel BTF shared by the replicas of a fleet through Redis, never evicted.

Keys (``{arch/release}`` a hash tag, so one kernel's keys share a slot)::

    lcc:btf:{<arch>/<release>}:meta   hash: sha256, size, chunks, owner, source
    lcc:btf:{<arch>/<release>}:<i>    the raw BTF in chunks
    lcc:btf:index                     set of "<arch>/<release>"

No key has a TTL, so ``volatile-lru`` never evicts them.  Each replica
registers its own kernel at start (``register_host``: source "host", owner
"host"), so a compile for that kernel works on every replica.  ``find``
materialises an entry into the replica's disk store (streamed chunk by chunk,
checked against its sha256) when it is missing or differs there: vmlinux.h
and the PCH are derived from that local copy and stay local, keyed by the
BTF's digest.  While Redis is down the replica's disk store answers alone.
"""

from __future__ import annotations

import hashlib
import logging

from lcc_server.btf_store import (BtfConflict, BtfEntry, BtfForbidden, BtfQuotaExceeded,
                                  BtfStore as DiskBtfStore, check_btf)
from lcc_server.stores.base import StoreUnavailable
from lcc_server.stores.link import RedisLink
from lcc_server.stores.redis_artifacts import CHUNK
from lcc_server.tokens import Caller

__all__ = ["FleetBtfStore"]

log = logging.getLogger("lcc_server.stores")

_INDEX = "lcc:btf:index"
_UPLOADS = "lcc:btf:uploads"


def _meta(arch: str, release: str) -> str:
    return f"lcc:btf:{{{arch}/{release}}}:meta"


def _chunk(arch: str, release: str, i: int) -> str:
    return f"lcc:btf:{{{arch}/{release}}}:{i}"


def _text(meta: dict) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in meta.items()}


class FleetBtfStore:
    """The fleet's BTF in Redis, materialised into ``local`` (a disk ``BtfStore``)."""

    def __init__(self, local: DiskBtfStore, link: RedisLink) -> None:
        self.local = local
        self.link = link
        self.host_arch = local.host_arch
        self.host_release = local.host_release
        self._local_sha: dict[tuple[str, str], tuple[float, int, str]] = {}

    # -- Redis ------------------------------------------------------------------

    def _shared_meta(self, arch: str, release: str) -> dict[str, str] | None:
        raw = self.link.run(lambda c: c.hgetall(_meta(arch, release)), "reading BTF")
        return _text(raw) if raw else None

    def _write_shared(self, arch: str, release: str, data: bytes, owner: str,
                      source: str) -> None:
        n = max(1, -(-len(data) // CHUNK))

        def write(c) -> None:
            for start in range(0, n, 8):  # a few chunks per round trip
                pipe = c.pipeline(transaction=False)
                for i in range(start, min(n, start + 8)):
                    pipe.set(_chunk(arch, release, i), data[i * CHUNK:(i + 1) * CHUNK])
                pipe.execute()
            c.hset(_meta(arch, release), mapping={
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "chunks": n,
                "owner": owner, "source": source})
            c.sadd(_INDEX, f"{arch}/{release}")
            if source == "upload":
                c.sadd(_UPLOADS, f"{arch}/{release}")
        self.link.run(write, "storing BTF")

    def _read_shared(self, arch: str, release: str, meta: dict[str, str]) -> bytes | None:
        sha = hashlib.sha256()
        parts = []
        for i in range(int(meta["chunks"])):
            part = self.link.run(lambda c, i=i: c.get(_chunk(arch, release, i)), "reading BTF")
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
        already has that release; raises ``StoreUnavailable``."""
        host = self.local.find(self.host_arch, self.host_release)
        if host is None or host.source != "host":
            return
        meta = self._shared_meta(host.arch, host.release)
        data = host.path.read_bytes()
        if meta is not None:
            if meta.get("sha256") != hashlib.sha256(data).hexdigest():
                log.warning("the fleet has a different BTF for %s/%s than this host's; "
                            "this replica compiles for its own", host.arch, host.release)
            return
        self._write_shared(host.arch, host.release, data, "host", "host")

    # -- the protocol -----------------------------------------------------------

    def _local_sha256(self, entry: BtfEntry) -> str:
        st = entry.path.stat()
        key = (entry.arch, entry.release)
        known = self._local_sha.get(key)
        if known is not None and known[:2] == (st.st_mtime, st.st_size):
            return known[2]
        sha = hashlib.sha256(entry.path.read_bytes()).hexdigest()
        self._local_sha[key] = (st.st_mtime, st.st_size, sha)
        return sha

    def find(self, arch: str, release: str) -> BtfEntry | None:
        local = self.local.find(arch, release)  # checks the names too
        if local is not None and local.source == "host":
            return local
        try:
            meta = self._shared_meta(arch, release)
        except StoreUnavailable:
            return local
        if meta is None:
            return local
        if local is not None and self._local_sha256(local) == meta.get("sha256"):
            return local
        try:
            data = self._read_shared(arch, release, meta)
        except StoreUnavailable:
            return local
        if data is None:
            return local
        return self.local.install(arch, release, data, meta.get("owner") or None)

    def owner(self, arch: str, release: str) -> str | None:
        try:
            meta = self._shared_meta(arch, release)
        except StoreUnavailable:
            meta = None
        return meta.get("owner") or None if meta else self.local.owner(arch, release)

    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None) -> tuple[BtfEntry, bool]:
        """As the disk store's ``put``, fleet-wide: conflicts and ownership are
        judged against what Redis holds."""
        local = self.local.find(arch, release)
        check_btf(data)
        if local is not None and local.source == "host":
            return self.local.put(arch, release, data, replace=replace, caller=caller)
        try:
            meta = self._shared_meta(arch, release)
        except StoreUnavailable:
            return self.local.put(arch, release, data, replace=replace, caller=caller)
        owner = caller.name if caller is not None else None
        if meta is not None:
            if meta.get("sha256") == hashlib.sha256(data).hexdigest():
                return self.local.install(arch, release, data, meta.get("owner") or None), False
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
        elif (limit := self.local.max_releases) is not None and self.upload_count() >= limit:
            raise BtfQuotaExceeded(limit)
        try:
            self._write_shared(arch, release, data, owner or "", "upload")
        except StoreUnavailable:
            return self.local.put(arch, release, data, replace=replace, caller=caller)
        return self.local.install(arch, release, data, owner), True

    def remove(self, arch: str, release: str) -> None:
        self.local.remove(arch, release)
        try:
            self.link.run(lambda c: (c.delete(_meta(arch, release)),
                                     c.srem(_INDEX, f"{arch}/{release}"),
                                     c.srem(_UPLOADS, f"{arch}/{release}")), "removing BTF")
        except StoreUnavailable:
            pass

    def upload_count(self) -> int:
        """Releases uploaded to the fleet (this replica's alone while degraded)."""
        try:
            return self.link.run(lambda c: c.scard(_UPLOADS), "counting BTF")
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
            out.append(BtfEntry(arch, release, None, meta.get("source", "upload"),
                                meta.get("owner") or None, meta.get("sha256"),
                                int(meta.get("size", 0))))
        return out
