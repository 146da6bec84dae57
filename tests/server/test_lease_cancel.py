"""A fleet lease taken for a request whose clients all went away is given back.

The service takes a request key's lease in a worker thread.  When the last
client waiting for that compile disconnects meanwhile, the compile task is
cancelled but the thread still takes the lease; it must then be released at
once, not renewed for ever by a holder nobody releases (every replica
waiting for that key would wait for ever).  Real redis-server, the service
built by ``create_app`` on it; the lease's acquisition is held at a gate so
the cancellation lands exactly while it is in flight.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
from fleettools import redis_server
from lcc_server.app import create_app
from lcc_server.settings import Settings
from lcc_server.stores.lease import Leases

pytestmark = [pytest.mark.server, pytest.mark.fleet]


class GatedLeases(Leases):
    """Real leases whose ``acquire`` waits for ``gate`` before asking Redis."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.taken = threading.Event()

    def acquire(self, key: str):
        self.entered.set()
        self.gate.wait(30)
        lease = super().acquire(key)
        self.taken.set()
        return lease


def _renewers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lcc-lease" and t.is_alive()]


def test_a_lease_taken_after_its_compile_was_cancelled_is_released(tmp_path):
    with redis_server() as server:
        settings = Settings(state_dir=tmp_path / "state", warm=False,
                            host_btf=Path("/sys/kernel/btf/vmlinux"), store=server.url,
                            insecure_no_sandbox=True, lease_ms=1000)
        service = create_app(settings).state.service
        leases = GatedLeases(service.leases.link, ttl_ms=1000, holder="cancelled")
        service.leases = leases
        key = os.urandom(32).hex()
        compiled = []

        async def job():
            compiled.append(key)
            raise AssertionError("the compile of a cancelled request ran")

        async def scenario() -> None:
            task = asyncio.ensure_future(service._fleet_compile(key, job))
            await asyncio.get_running_loop().run_in_executor(None, leases.entered.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            leases.gate.set()  # the thread now takes the lease nobody wants
            await asyncio.get_running_loop().run_in_executor(None, leases.taken.wait, 10)
            # Released by the service (not by expiry: the renewer would keep it).
            deadline = time.monotonic() + 10
            while leases.holder_of(key) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

        try:
            asyncio.run(scenario())
            assert leases.taken.is_set() and not compiled
            assert leases.holder_of(key) is None, "the abandoned lease is still held"
            deadline = time.monotonic() + 5
            while _renewers() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _renewers() == [], "the abandoned lease's renewer still runs"
        finally:
            service.close()
            service.leases.link.close()
