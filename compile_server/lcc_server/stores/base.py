"""The storage seam of the service: what it asks of its artifact and BTF stores.

The service talks to these protocols only.  The default implementations are
the disk stores (``lcc_server.artifacts.ArtifactStore``,
``lcc_server.btf_store.BtfStore``); a fleet's are in ``lcc_server.stores.fleet``
(Redis shared by replicas, the disk stores in front as each replica's cache
and as its fallback while Redis is down).

Every method may block (disk, network): the service calls them from its I/O
threads, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lcc_server.artifacts import Artifact, Hit
from lcc_server.btf_store import BtfEntry
from lcc_server.tokens import Caller

__all__ = ["ArtifactStore", "BtfStore", "StoreStatus", "StoreUnavailable"]


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
    """Kernel BTF by (arch, release).  ``find`` and ``put`` return entries whose
    ``path`` is a local file (materialised from a shared store when needed),
    since vmlinux.h and the PCH are derived on this host; ``entries`` lists
    without materialising."""

    host_arch: str
    host_release: str

    def find(self, arch: str, release: str) -> BtfEntry | None: ...
    def owner(self, arch: str, release: str) -> str | None: ...
    def put(self, arch: str, release: str, data: bytes, *, replace: bool = False,
            caller: Caller | None = None) -> tuple[BtfEntry, bool]: ...
    def remove(self, arch: str, release: str) -> None: ...
    def entries(self) -> list[BtfEntry]: ...
    def upload_count(self) -> int: ...
