"""Fleet-wide single flight: a lease in Redis per request key.

``leases.acquire(key)`` sets ``lcc:lease:{<key>}`` to this holder's token with
``SET NX PX ttl``: a ``Lease`` when it was free, else None.  The holder's
lease is renewed by a thread every ttl/4 while it compiles (compare and
``PEXPIRE``, so a lease that expired and was taken by another replica is not
stolen back) and released with a compare-and-delete script.  A holder that
dies (SIGKILL, lost host) renews nothing: its lease expires after ``ttl`` ms
and a waiting replica takes it over.  Beside the lease, a *claim*
(``lcc:claim:{<key>}``, 20 ttl long) names the holder until it releases; a
new holder that finds another's claim took the lease over from a holder that
went away (``Lease.took_over``).  Releasing publishes the key on
``lcc_server.stores.notices.CHANNEL``, which wakes the replicas waiting for
it.  Every call raises ``StoreUnavailable``
when Redis fails; the service then compiles on its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading

from lcc_server.stores.link import RedisLink
from lcc_server.stores.notices import CHANNEL

__all__ = ["Lease", "Leases"]

log = logging.getLogger("lcc_server.stores")

# KEYS: lease, claim (one hash tag: one cluster slot); ARGV: token, lease ms, claim ms
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local old = redis.call('get', KEYS[2])
  redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[3])
  if old then return old end
  return ''
end
return false
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[2], ARGV[3])
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# ARGV: token, notice channel, request key (published when the lease was ours)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], ARGV[3])
end
if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[2]) end
return 1
"""


def _lease_key(key: str) -> str:
    return f"lcc:lease:{{{key}}}"


def _claim_key(key: str) -> str:
    return f"lcc:claim:{{{key}}}"


class Lease:
    """A held lease, renewed in the background until :meth:`release`."""

    def __init__(self, leases: Leases, key: str, token: str,
                 took_over: str | None = None) -> None:
        self._leases = leases
        self.key = key
        self.token = token
        #: The token of a holder that went away without releasing it, or None.
        self.took_over = took_over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lcc-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        link, ttl = self._leases.link, self._leases.ttl_ms
        while not self._stop.wait(ttl / 4000):  # four chances before it expires
            try:
                held = link.run(lambda c: c.eval(_RENEW, 2, _lease_key(self.key),
                                                 _claim_key(self.key), self.token, ttl,
                                                 ttl * 20), "renewing a lease")
            except Exception:  # noqa: BLE001 - the link logged it; the compile goes on
                continue
            if not held:
                log.warning("lease for %s was lost (expired while this replica compiled)",
                            self.key[:16])
                return

    def release(self) -> None:
        """Stop renewing, delete the lease if still ours and then tell the waiting
        replicas (``Notices``); raises ``StoreUnavailable``."""
        self._stop.set()
        self._leases.link.run(lambda c: c.eval(_RELEASE, 2, _lease_key(self.key),
                                               _claim_key(self.key), self.token, CHANNEL,
                                               self.key),
                              "releasing a lease")


class Leases:
    """Leases of one replica (``holder`` names it in the lease's value)."""

    def __init__(self, link: RedisLink, *, ttl_ms: int, holder: str | None = None) -> None:
        self.link = link
        self.ttl_ms = ttl_ms
        self.holder = holder or f"{os.uname().nodename}:{os.getpid()}"

    def acquire(self, key: str) -> Lease | None:
        token = f"{self.holder}:{secrets.token_hex(8)}"
        got = self.link.run(lambda c: c.eval(_ACQUIRE, 2, _lease_key(key), _claim_key(key),
                                             token, self.ttl_ms, self.ttl_ms * 20),
                            "taking a lease")
        if got is None:
            return None
        return Lease(self, key, token, got.decode(errors="replace") or None)

    def holder_of(self, key: str) -> str | None:
        """Who holds the lease on ``key`` now (its token), or None."""
        raw = self.link.run(lambda c: c.get(_lease_key(key)), "reading a lease")
        return raw.decode(errors="replace") if raw is not None else None
