"""The storage seam of the service: what it asks of its artifact and BTF stores.

The service talks to these protocols only.  The default implementations are
the disk stores (``lcc_server.artifacts.ArtifactStore``,
``lcc_server.btf_store.BtfStore``); a fleet's are in
``lcc_server.stores.redis_artifacts`` and ``redis_btf`` (Redis shared by
replicas, the disk stores in front as each replica's cache and as its
fallback while Redis is down).

Every method may block (disk, network): the service calls them from its I/O
threads, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from lcc_server.artifacts import Artifact, Hit
from lcc_server.btf_store import BtfEntry
from lcc_server.tokens import Caller

__all__ = ["ArtifactStore", "BtfFiles", "BtfStore", "StoreStatus", "StoreUnavailable"]


class StoreUnavailable(ConnectionError):
    """The shared store cannot be reached; callers fall back to local state."""


@dataclass(frozen=True)
class StoreStatus:
    """What ``/healthz`` says about the store: ``kind`` "disk" or "redis", ``ok``
    whether it answers, ``degraded`` whether this replica works on its own."""

    kind: str
    ok: bool = True
    degraded: bool = False

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ok": self.ok, "degraded": self.degraded}


@runtime_checkable
class ArtifactStore(Protocol):
    """Compiled objects by digest, and the request key -> digest index.

    Reads check the object's sha256 and the seals of its records and answer
    None for anything that does not verify."""

    evicted: int

    def put(self, art: Artifact) -> None: ...
    def get(self, digest: str) -> Artifact | None: ...
    def remember(self, key: str, digest: str) -> None: ...
    def lookup(self, key: str) -> Artifact | None: ...
    def find(self, key: str) -> Hit | None: ...
    def put_btf(self, digest: str, btf_sha: str, data: bytes) -> None: ...
    def get_btf(self, digest: str, btf_sha: str) -> bytes | None: ...
    def disk_usage(self) -> int: ...


@runtime_checkable
class BtfStore(Protocol):
    """Kernel BTF by (arch, release).  Entries carry digests, sizes and owners,
    never local paths; ``read`` gives the bytes.  ``put`` is atomic wherever
    the store is shared (processes on one state directory, replicas on one
    Redis): of two first uploads of different BTF for one kernel one is
    created and the other is a ``BtfConflict``, and concurrent new releases
    never pass the cap."""

    host_arch: str
    host_release: str

    def find(self, arch: str, release: str) -> BtfEntry | None: ...
    def read(self, arch: str, release: str) -> bytes | None: ...
    def owner(self, arch: str, release: str) -> str | None: ...
    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None) -> tuple[BtfEntry, bool]: ...
    def remove(self, arch: str, release: str) -> None: ...
    def entries(self) -> list[BtfEntry]: ...
    def upload_count(self) -> int: ...


@runtime_checkable
class BtfFiles(Protocol):
    """The one way to a local BTF file, for the tools that need one (bpftool
    for vmlinux.h, clang and its PCH): ``materialise`` copies a shared store's
    entry to this host when it is missing or differs here, checks its sha256,
    and returns the file.  Raises ``InvalidRequest``, ``BtfUnavailable``
    (unknown, or it does not verify).  Both BTF stores implement it."""

    def materialise(self, arch: str, release: str) -> Path: ...
