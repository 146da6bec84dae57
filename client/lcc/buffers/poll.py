"""PollGroup: ring and perf buffers waited on together, through one epoll fd.

A perf event fd reports readiness once per wakeup: the kernel clears it
whenever anything polls the fd (``perf_poll`` swaps the flag to 0), and an
epoll set polls its members when they are added or modified and, for a
nested epoll fd such as a buffer's, whenever the outer set is checked.  So
the group keeps each buffer in one epoll set only, and a buffer it may have
seen ready without delivering its events (just added, or ready while the
group waited for buffers of the other kind) is *set aside*: the next call
for its kind consumes it without waiting for a signal that may not come.

A ring buffer's producer may also choose not to signal (``BPF_RB_NO_WAKEUP``,
as ``LBC_RB_WAKEUP`` does below its watermark): a wait that runs out reads
the ring buffers anyway, so such events come at the latest one timeout late.
"""

from __future__ import annotations

import select
import time

from ..errors import ClosedError, LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class PollGroup:
    """Ring and perf buffers polled together: one epoll fd, one ``poll()``.

    :meth:`poll` waits until a buffer has events, then delivers the events
    of every buffer that has some; :meth:`consume` delivers what waits
    without waiting; :meth:`fileno` is readable while a buffer has events,
    for an event loop (``loop.add_reader(group.fileno(), group.consume)``:
    call :meth:`consume` there, not ``poll(0)``, since the loop's check
    already took the perf buffers' signal).  ``kind="ring"`` or ``"perf"``
    narrows either call to one kind of buffer, as BCC's ``ring_buffer_poll``
    and ``perf_buffer_poll`` do.

    A callback's exception stops the delivery and is raised from the call;
    the ready buffers it kept from delivering come first in the next call.

    Owns its epoll fd (and nothing that reaches a callback): ``adopt`` (the
    BPF object's ``adopt_buffer``) takes it, so that it closes with the
    buffers; :meth:`close` closes it sooner.  The buffers stay their owners'.
    """

    def __init__(self, *, adopt: Callable[[Any], None] | None = None) -> None:
        self._epoll = select.epoll()
        if adopt is not None:
            adopt(self._epoll)  # has close() and closed, as adopt_buffer wants
        self._by_fd: dict[int, Any] = {}  # fileno -> buffer
        # Buffers to consume without waiting, in order; those of them whose
        # registration is disarmed (so that a wait for the other kind does not
        # wake up for them again and again) are in _disarmed too.
        self._aside: list[Any] = []
        self._disarmed: set[int] = set()

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def _check(self) -> select.epoll:
        if self._epoll.closed:
            raise ClosedError("the poll group is closed")
        return self._epoll

    def add(self, buffer: Any) -> None:
        """Poll ``buffer`` (a :class:`RingBuffer` with a callback, or a
        :class:`PerfBuffer`) with the others.  Adding it again does nothing."""
        ep = self._check()
        if getattr(buffer, "callback", True) is None:
            raise LccError(f"ring buffer '{buffer.name}' has no callback: a poll group "
                           "delivers events to callbacks (use read() on its own)")
        fd = buffer.fileno()
        if self._by_fd.get(fd) is buffer:
            return
        # A buffer closed since keeps no registration: the kernel dropped it with
        # its fd, whose number the new buffer may have now.
        try:
            ep.register(fd, select.EPOLLIN)
        except FileExistsError:
            ep.modify(fd, select.EPOLLIN)
        self._disarmed.discard(fd)
        self._by_fd[fd] = buffer
        self._aside.append(buffer)  # registering polled it: its signal may be gone

    @property
    def buffers(self) -> list[Any]:
        """The open buffers of the group."""
        return [b for b in self._by_fd.values() if not b.closed]

    def has(self, kind: str | None = None) -> bool:
        """Whether the group has an open buffer (of ``kind``)."""
        return any(kind is None or b.kind == kind for b in self.buffers)

    def poll(self, timeout_ms: int = -1, kind: str | None = None) -> int:
        """Wait up to ``timeout_ms`` (-1: forever, 0: not at all) until a buffer
        (of ``kind``) has events, then deliver the events of every ready buffer;
        returns how many were delivered."""
        ep = self._check()
        n = self._deliver(self._take_aside(kind))
        if n:
            return n
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None
        wait = timeout_ms / 1000 if timeout_ms > 0 else timeout_ms
        get = self._by_fd.get
        while True:
            signalled = ep.poll(wait)
            if not signalled and wait != 0 and kind != "perf":
                # The wait ran out: ring buffers are read all the same, since a
                # producer may submit without waking the reader (LBC_RB_WAKEUP
                # below its watermark) and its events wait for this.  Reading
                # an empty ring costs two loads, no system call.
                return self._deliver([b for b in self._by_fd.values() if b.kind == "ring"])
            ready = [b for b in (get(fd) for fd, _ in signalled) if b is not None]
            if kind is not None:
                others = [b for b in ready if b.kind != kind]
                if others:
                    self._set_aside(ep, others)
                    ready = [b for b in ready if b.kind == kind]
                    if not ready and wait != 0:
                        if deadline is not None:
                            wait = deadline - time.monotonic()
                            if wait <= 0:
                                return 0
                        continue
            return self._deliver(ready)

    def consume(self, kind: str | None = None) -> int:
        """Deliver the events every buffer (of ``kind``) holds, without waiting."""
        self._check()
        self._take_aside(kind)  # all of them are consumed below
        return self._deliver([b for b in self._by_fd.values()
                              if kind is None or b.kind == kind])

    def fileno(self) -> int:
        """An epoll fd that is readable while any buffer of the group has events."""
        return self._check().fileno()

    def close(self) -> None:
        """Close the group's epoll fd (not its buffers). Idempotent."""
        self._epoll.close()
        self._aside.clear()

    def _set_aside(self, ep: select.epoll, bufs: list[Any]) -> None:
        for b in bufs:
            if b not in self._aside:
                self._aside.append(b)
            fd = b.fileno() if not b.closed else -1
            if fd >= 0 and fd not in self._disarmed:
                ep.modify(fd, 0)
                self._disarmed.add(fd)

    def _take_aside(self, kind: str | None) -> list[Any]:
        if not self._aside:
            return []
        take = [b for b in self._aside if kind is None or b.kind == kind]
        self._aside = [b for b in self._aside if b not in take]
        for b in take:
            # Re-armed before it is consumed: a signal the re-arm's poll takes
            # is for events the consume right after delivers.
            fd = b.fileno() if not b.closed else -1
            if fd in self._disarmed:
                self._epoll.modify(fd, select.EPOLLIN)
                self._disarmed.discard(fd)
        return take

    def _deliver(self, bufs: list[Any]) -> int:
        n = 0
        for i, b in enumerate(bufs):
            if b.closed:
                continue
            try:
                n += b.consume()
            except BaseException:
                self._aside.extend(x for x in bufs[i + 1:] if x not in self._aside)
                raise
        return n

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.buffers)} buffers"
        return f"<PollGroup {state}>"
