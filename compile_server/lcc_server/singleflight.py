"""Run one job per key at a time; callers asking for a running key share its result.

``await flight.do(key, make)`` starts ``make()`` (a coroutine function) when
no job for ``key`` is running, else waits for the running one.  Returns
``(result, shared)``; ``shared`` is True for callers that did not start the
job.  An exception reaches every caller.  The job runs as its own task, so a
caller that goes away (client disconnect) does not cancel it for the others;
when the last caller waiting for it is cancelled, the job is cancelled too.
Scope: one event loop (one server process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SingleFlight"]


class SingleFlight:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task] = {}
        self._waiters: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def do(self, key: str, make: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        task = self._running.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(make())
            self._running[key] = task
            task.add_done_callback(lambda t, k=key: self._forget(k, t))
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            return await asyncio.shield(task), shared
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:
                del self._waiters[key]
                if not task.done():  # nobody is left to want it
                    task.cancel()

    def _forget(self, key: str, task: asyncio.Task) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter already saw it
