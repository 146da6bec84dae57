"""Artifacts shared by the replicas of a fleet through Redis.

Keys (``{digest}`` is a hash tag: one artifact's keys share a cluster slot)::

    lcc:a:{<digest>}:meta       JSON: the sealed record (as on disk) and the chunk count
    lcc:a:{<digest>}:<i>        the object, in chunks of CHUNK bytes
    lcc:k:<request key>         "<digest>\\n<seal>", as the disk's keys/ files
    lcc:a:{<digest>}:btf:<kernel BTF sha256>
                                BTF tailored to the object for that kernel:
                                "<its sha256>\\n<seal>\\n" then the bytes

Every key has a TTL (``ttl`` seconds, renewed on each hit), so Redis run with
``maxmemory-policy volatile-lru`` evicts least recently used artifacts and
never the BTF (``redis_btf``, no TTL).  Chunks are written before the record
that names them; a reader checks the object's sha256 and the record's seal
(signed with the fleet's shared key) and treats anything else, or a chunk
evicted under it, as a miss.

``FleetArtifactStore`` puts the replica's disk store in front: hits there
cost no network, what Redis answers is kept on disk too, and while Redis is
down (``StoreUnavailable``) the replica works from its disk store alone.
Tailored BTF is shared the same way (one value, sealed, with the artifact's
TTL; one larger than ``CHUNK`` stays on the replica that made it).
"""

from __future__ import annotations

import hashlib
import json
import logging

from lcc_server.artifacts import (Artifact, ArtifactStore as DiskArtifactStore, Hit,
                                  _artifact_statement, _btf_statement, _request_statement,
                                  seal_statement, seal_verifies)
from lcc_server.signing import KeyRing
from lcc_server.stores.base import StoreUnavailable
from lcc_server.stores.link import RedisLink
from lcc_toolchain.errors import Diagnostic
from lcc_toolchain.validation import DIGEST_RE

__all__ = ["CHUNK", "FleetArtifactStore", "RedisArtifacts"]

log = logging.getLogger("lcc_server.stores")

#: Bytes per Redis value for objects and BTF.
CHUNK = 512 << 10


def _meta_key(digest: str) -> str:
    return f"lcc:a:{{{digest}}}:meta"


def _chunk_key(digest: str, i: int) -> str:
    return f"lcc:a:{{{digest}}}:{i}"


def _tailored_key(digest: str, btf_sha: str) -> str:
    return f"lcc:a:{{{digest}}}:btf:{btf_sha}"


def _request_key(key: str) -> str:
    return f"lcc:k:{key}"


class RedisArtifacts:
    """The Redis tier alone; every method raises ``StoreUnavailable`` when Redis fails."""

    def __init__(self, link: RedisLink, *, keys: KeyRing | None, ttl: int) -> None:
        self.link = link
        self.keys = keys
        self.ttl_ms = ttl * 1000

    def put(self, art: Artifact) -> None:
        meta = {"toolchain": art.toolchain, "warnings": [w.to_dict() for w in art.warnings],
                "programs": art.programs, "maps": art.maps}
        seal = seal_statement(self.keys, _artifact_statement(art.digest, len(art.object), meta))
        n = max(1, -(-len(art.object) // CHUNK))
        record = json.dumps({"record": {**meta, **({"seal": seal} if seal else {})},
                             "chunks": n}, sort_keys=True).encode()

        def write(c) -> None:
            pipe = c.pipeline(transaction=False)
            for i in range(n):
                pipe.set(_chunk_key(art.digest, i), art.object[i * CHUNK:(i + 1) * CHUNK],
                         px=self.ttl_ms)
            pipe.set(_meta_key(art.digest), record, px=self.ttl_ms)
            pipe.execute()
        self.link.run(write, "storing an artifact")

    def get(self, digest: str) -> Artifact | None:
        if not DIGEST_RE.fullmatch(digest):
            return None
        raw = self.link.run(lambda c: c.get(_meta_key(digest)), "reading an artifact")
        if raw is None:
            return None
        try:
            outer = json.loads(raw)
            meta, n = dict(outer["record"]), int(outer["chunks"])
        except (ValueError, KeyError, TypeError):
            log.warning("artifact %s: its record in Redis is not JSON; ignored", digest[:16])
            return None
        sha = hashlib.sha256()
        parts = []
        for i in range(n):  # one chunk at a time, hashed as it comes
            part = self.link.run(lambda c, i=i: c.get(_chunk_key(digest, i)),
                                 "reading an artifact")
            if part is None:
                return None  # evicted under us: compiled again
            sha.update(part)
            parts.append(part)
        if sha.hexdigest() != digest:
            log.warning("artifact %s: the object in Redis does not match its digest; ignored",
                        digest[:16])
            return None
        data = b"".join(parts)
        seal = meta.pop("seal", None)
        if not seal_verifies(self.keys, _artifact_statement(digest, len(data), meta), seal):
            log.warning("artifact %s: its record in Redis is not sealed by a key this service "
                        "holds (do all replicas share LCC_SIGNING_KEY?); ignored", digest[:16])
            return None
        try:
            art = Artifact(digest=digest, object=data, toolchain=dict(meta["toolchain"]),
                           warnings=[Diagnostic.from_dict(w) for w in meta["warnings"]],
                           programs=list(meta["programs"]), maps=list(meta["maps"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        self.link.run(lambda c: self._touch(c, digest, n), "touching an artifact")
        return art

    def _touch(self, c, digest: str, n: int) -> None:
        pipe = c.pipeline(transaction=False)
        pipe.pexpire(_meta_key(digest), self.ttl_ms)
        for i in range(n):
            pipe.pexpire(_chunk_key(digest, i), self.ttl_ms)
        pipe.execute()

    def remember(self, key: str, digest: str) -> None:
        seal = seal_statement(self.keys, _request_statement(key, digest))
        value = f"{digest}\n{seal}".rstrip().encode()
        self.link.run(lambda c: c.set(_request_key(key), value, px=self.ttl_ms),
                      "storing a request key")

    def digest_of(self, key: str) -> str | None:
        """The digest request ``key`` compiled to, if recorded and sealed."""
        raw = self.link.run(lambda c: c.get(_request_key(key)), "reading a request key")
        if raw is None:
            return None
        digest, _, seal = raw.decode(errors="replace").strip().partition("\n")
        if not DIGEST_RE.fullmatch(digest) \
                or not seal_verifies(self.keys, _request_statement(key, digest), seal or None):
            log.warning("request key %s: its record in Redis is refused; ignored", key[:16])
            return None
        self.link.run(lambda c: c.pexpire(_request_key(key), self.ttl_ms),
                      "touching a request key")
        return digest

    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None:
        """Share BTF tailored to object ``digest`` for kernel BTF ``btf_sha`` (not
        when larger than ``CHUNK``: one value, not chunks)."""
        if len(data) > CHUNK:
            return
        statement = _btf_statement(digest, btf_sha, data)
        head = f"{statement['btf']['sha256']}\n{seal_statement(self.keys, statement)}\n"
        self.link.run(lambda c: c.set(_tailored_key(digest, btf_sha), head.encode() + data,
                                      px=self.ttl_ms), "storing tailored BTF")

    def get_btf(self, digest: str, btf_sha: str) -> bytes | None:
        """What :meth:`put_btf` shared, if its sha256 and seal verify."""
        if not DIGEST_RE.fullmatch(digest) or not DIGEST_RE.fullmatch(btf_sha):
            return None
        raw = self.link.run(lambda c: c.get(_tailored_key(digest, btf_sha)),
                            "reading tailored BTF")
        if raw is None:
            return None
        sha, seal, data = (raw.split(b"\n", 2) + [b"", b""])[:3]
        statement = _btf_statement(digest, btf_sha, data)
        if (sha.decode(errors="replace") != statement["btf"]["sha256"]
                or not seal_verifies(self.keys, statement, seal.decode(errors="replace"))):
            log.warning("tailored BTF of %s in Redis does not verify; ignored", digest[:16])
            return None
        return data

    def lookup(self, key: str) -> Artifact | None:
        digest = self.digest_of(key)
        return None if digest is None else self.get(digest)


class FleetArtifactStore:
    """This replica's disk store in front of the fleet's Redis (module docstring)."""

    def __init__(self, local: DiskArtifactStore, shared: RedisArtifacts) -> None:
        self.local = local
        self.shared = shared

    @property
    def evicted(self) -> int:
        return self.local.evicted

    def disk_usage(self) -> int:
        return self.local.disk_usage()

    def close(self) -> None:
        self.local.close()

    def put(self, art: Artifact) -> None:
        self.local.put(art)
        try:
            self.shared.put(art)
        except StoreUnavailable:
            pass  # kept locally; the link logged and counted it

    def remember(self, key: str, digest: str) -> None:
        self.local.remember(key, digest)
        try:
            self.shared.remember(key, digest)
        except StoreUnavailable:
            pass

    def get(self, digest: str) -> Artifact | None:
        art = self.local.get(digest)
        if art is not None:
            return art
        try:
            art = self.shared.get(digest)
        except StoreUnavailable:
            return None
        if art is not None:
            self.local.put(art)
        return art

    def find(self, key: str) -> Hit | None:
        hit = self.local.find(key)
        if hit is not None:
            return hit
        try:
            digest = self.shared.digest_of(key)
            art = None if digest is None else self.shared.get(digest)
        except StoreUnavailable:
            return None
        if art is None:
            return None
        self.local.put(art)
        self.local.remember(key, art.digest)
        return Hit(art, "store")

    def lookup(self, key: str) -> Artifact | None:
        hit = self.find(key)
        return None if hit is None else hit.artifact

    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None:
        self.local.put_btf(digest, btf_sha, data)
        try:
            self.shared.put_btf(digest, btf_sha, data)
        except StoreUnavailable:
            pass

    def get_btf(self, digest: str, btf_sha: str) -> bytes | None:
        data = self.local.get_btf(digest, btf_sha)
        if data is not None:
            return data
        try:
            data = self.shared.get_btf(digest, btf_sha)
        except StoreUnavailable:
            return None
        if data is not None and self.local.object_path(digest).is_file():
            self.local.put_btf(digest, btf_sha, data)  # beside its object, in its budget
        return data
