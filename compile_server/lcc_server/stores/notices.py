"""Notices that a fleet compile finished, through Redis pub/sub.

A lease's holder publishes the request key on ``lcc:done`` when it releases
the lease (``lcc_server.stores.lease``: in the release script, so no extra
round trip), whether it stored an artifact or failed.  Each replica has one
subscriber thread (``Notices.start()``) that wakes the requests waiting for
that key (``await notices.wait(key, timeout)``); one connection per replica,
not one per waiting request.  Notices only shorten waits: a waiter still
looks at the store when its timeout passes (a notice sent before it
subscribed, or lost while the subscriber reconnects, costs one poll
interval), and while the subscriber is not connected (``listening`` false)
the service polls at its short interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from lcc_server.stores.link import RedisLink

__all__ = ["CHANNEL", "Notices"]

log = logging.getLogger("lcc_server.stores")

CHANNEL = "lcc:done"


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(True)


class Notices:
    """The subscriber of one replica; ``close()`` stops its thread."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        #: whether the subscriber is connected (waits may then be long)
        self.listening = False
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lcc-notices", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        """Stop the subscriber and wait (up to ``timeout`` seconds) for its
        thread to close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    async def wait(self, key: str, timeout: float) -> bool:
        """True when a notice for ``key`` came within ``timeout`` seconds."""
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.setdefault(key, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(fut)
                    if not waiting:
                        del self._waiters[key]

    def _notice(self, key: str) -> None:
        with self._lock:
            waiting = list(self._waiters.get(key, ()))
        for fut in waiting:
            fut.get_loop().call_soon_threadsafe(_wake, fut)

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.listening = True
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._notice(msg["data"].decode(errors="replace"))
            except Exception as exc:  # noqa: BLE001 - Redis away: waiters poll meanwhile
                if self.listening:
                    log.info("compile notices stopped (%s); waiting replicas poll the store",
                             exc)
                self.listening = False
                self._stop.wait(self.link.retry_seconds)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - closing a dead connection
                        pass
        self.listening = False
