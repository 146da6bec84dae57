"""Where the service keeps its state: the storage seam and its implementations.

- ``base``: the ``ArtifactStore`` and ``BtfStore`` protocols the service talks
  to, ``StoreStatus``, ``StoreUnavailable``;
- the disk stores (``lcc_server.artifacts``, ``lcc_server.btf_store``): the
  default, one service on one state directory;
- ``link``: a replica's Redis connection and its degraded mode;
- ``redis_artifacts``, ``redis_btf``: a fleet's shared state in Redis, each
  replica's disk stores in front;
- ``lease``: fleet-wide single flight; ``notices``: its completion notices
  (pub/sub) that wake waiting requests.

``open_stores(settings, ...)`` picks them from ``settings.store``
(``LCC_STORE``): ``disk``, ``redis://host:port/db`` or
``redis+cluster://host:port[,host:port]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lcc_server.stores.base import ArtifactStore, BtfStore, StoreStatus, StoreUnavailable

__all__ = ["ArtifactStore", "BtfStore", "StoreStatus", "StoreUnavailable", "Stores",
           "open_stores"]


@dataclass
class Stores:
    """The stores a service runs on.  ``leases`` and ``link`` are None for the
    disk store (single flight is then per process)."""

    artifacts: ArtifactStore
    btf: BtfStore
    leases: object | None = None
    link: object | None = None
    usage: object | None = None  # ``StateUsage`` of the state directory
    notices: object | None = None  # ``Notices`` of a fleet store

    def start(self) -> None:
        """Start listening for the fleet's completion notices (no-op on disk)."""
        if self.notices is not None:
            self.notices.start()

    def close(self) -> None:
        """Stop the notices' subscriber, close the Redis connections and the
        artifact ledger's database."""
        if self.notices is not None:
            self.notices.close()
        if self.link is not None:
            self.link.close()
        close = getattr(self.artifacts, "close", None)  # an injected store may have none
        if close is not None:
            close()

    def status(self) -> StoreStatus:
        """Blocking (pings Redis)."""
        return StoreStatus("disk") if self.link is None else self.link.status()

    def register_host(self) -> None:
        """Publish this replica's kernel BTF to the fleet (no-op on disk); never raises
        for an unreachable store."""
        if self.link is None:
            return
        try:
            self.btf.register_host()
        except StoreUnavailable:
            pass  # registered on a later start, or uploaded by its users


def open_stores(settings, *, keys=None, metrics=None, btf_store=None,
                artifacts=None) -> Stores:
    """The stores ``settings.store`` names, the disk ones under
    ``settings.state_dir`` (given ``btf_store``/``artifacts`` are used as
    those).  Imports redis only for a Redis store."""
    from lcc_server.artifacts import ArtifactStore as DiskArtifactStore
    from lcc_server.btf_store import BtfStore as DiskBtfStore
    state = Path(settings.state_dir)
    from lcc_server.stores.usage import StateUsage
    usage = StateUsage(state)
    btf_store = btf_store or DiskBtfStore(state / "btf", host_btf=settings.host_btf,
                                          max_releases=settings.max_btf_releases)
    # one budget: what uploads and derived headers take is not left to objects
    artifacts = artifacts or DiskArtifactStore(state / "artifacts", keys=keys,
                                               disk_bytes=settings.max_artifact_bytes,
                                               reserved=usage.reserved)
    if settings.store == "disk":
        return Stores(artifacts, btf_store, usage=usage)
    from lcc_server.stores.lease import Leases
    from lcc_server.stores.link import RedisLink
    from lcc_server.stores.notices import Notices
    from lcc_server.stores.redis_artifacts import FleetArtifactStore, RedisArtifacts
    from lcc_server.stores.redis_btf import FleetBtfStore
    link = RedisLink(settings.store, retry_seconds=settings.store_retry_seconds,
                     metrics=metrics)
    shared = RedisArtifacts(link, keys=keys, ttl=settings.store_ttl)
    btf = FleetBtfStore(btf_store, link)
    # A Redis that restarted empty learns this replica's kernel again.
    link.on_recover.append(btf.register_host)
    return Stores(FleetArtifactStore(artifacts, shared), btf,
                  Leases(link, ttl_ms=settings.lease_ms), link, usage, Notices(link))
