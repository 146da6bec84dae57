"""One replica's connection to the fleet's Redis, and its degraded mode.

``RedisLink(url)`` makes the client lazily (``redis://`` through
``redis.Redis``, ``redis+cluster://h:p[,h:p]`` through redis-py's
``RedisCluster``).  ``link.run(fn)`` calls ``fn(client)``; any Redis or socket
error becomes ``StoreUnavailable``, counts in ``lcc_store_errors_total`` and
puts the link in degraded mode: for ``retry_seconds`` every ``run`` fails at
once (no timeouts piling up), then one is let through to try again, and the
first success ends degraded mode.  Both transitions are logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lcc_server.stores.base import StoreStatus, StoreUnavailable

__all__ = ["RedisLink", "redis_client"]

log = logging.getLogger("lcc_server.stores")

T = TypeVar("T")

# Short socket timeouts: a replica whose Redis hangs must answer from local
# state quickly rather than keep its clients waiting.
_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


def redis_client(url: str) -> Any:
    """A redis-py client for ``url`` (``redis://``, ``rediss://`` or
    ``redis+cluster://host:port[,host:port]``).  Cluster clients connect here."""
    import redis
    if url.startswith("redis+cluster://"):
        from redis.cluster import ClusterNode, RedisCluster
        nodes = []
        for part in url.split("://", 1)[1].strip("/").split(","):
            host, _, port = part.rpartition(":")
            nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
        return RedisCluster(startup_nodes=nodes, **_TIMEOUTS)
    return redis.Redis.from_url(url, **_TIMEOUTS)


class RedisLink:
    """The client and its health; thread-safe.  ``metrics`` (optional) gets
    ``store_errors`` and ``store_degraded``."""

    kind = "redis"

    def __init__(self, url: str, *, retry_seconds: float = 2.0, metrics=None) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self._client = None
        self._lock = threading.Lock()
        self.degraded = False
        self._retry_at = 0.0
        #: Called (in the thread that noticed) when Redis answers again.
        self.on_recover: list[Callable[[], None]] = []

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = redis_client(self.url)
            return self._client

    def run(self, fn: Callable[[Any], T], what: str = "redis") -> T:
        """``fn(client)``; raises ``StoreUnavailable`` when Redis fails or while
        degraded mode waits before trying again."""
        import redis
        if self.degraded and time.monotonic() < self._retry_at:
            raise StoreUnavailable(f"the shared store {self._safe_url} is unreachable")
        try:
            out = fn(self.client)
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            self._failed(what, exc)
            raise StoreUnavailable(f"{what}: {exc}") from exc
        if self.degraded:
            with self._lock:
                was, self.degraded = self.degraded, False
            if was:
                log.warning("the shared store %s answers again; leaving degraded mode",
                            self._safe_url)
                if self.metrics is not None:
                    self.metrics.store_degraded.set(0)
                for hook in self.on_recover:
                    try:
                        hook()
                    except Exception as exc:  # noqa: BLE001 - the request goes on
                        log.warning("after the shared store came back: %s", exc)
        return out

    def _failed(self, what: str, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.store_errors.inc()
        with self._lock:
            was, self.degraded = self.degraded, True
            self._retry_at = time.monotonic() + self.retry_seconds
            if self._client is not None and self.url.startswith("redis+cluster://"):
                # a cluster client that lost its nodes keeps a stale slot map
                self._client = None
        if not was:
            log.warning("the shared store %s failed (%s: %s); degraded mode: compiling and "
                        "serving from this replica's own state until it answers again",
                        self._safe_url, what, exc)
            if self.metrics is not None:
                self.metrics.store_degraded.set(1)

    def close(self) -> None:
        """Close the client's connections (a later ``run`` makes a new client)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing on shutdown
                log.debug("closing the shared store's client: %s", exc)

    def status(self) -> StoreStatus:
        """Pings Redis unless degraded mode is waiting to retry."""
        try:
            self.run(lambda c: c.ping(), "ping")
        except StoreUnavailable:
            return StoreStatus(self.kind, ok=False, degraded=True)
        return StoreStatus(self.kind, ok=True, degraded=False)

    @property
    def _safe_url(self) -> str:
        # never log a password given in the URL
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
