"""What the tools whose events come through a ring buffer share.

Their BPF side submits events to a ring buffer and, when it is full, counts
the event it could not send in a ``.bss`` global ``dropped``.  A tool class
lists :class:`RingEvents` before :class:`lcc.ClbcBase`::

    class TcpConnLat(RingEvents, ClbcBase): ...
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Any, Callable

#: How long a tool's poll waits at most.  Tools whose BPF side submits with
#: ``LBC_RB_WAKEUP`` are woken only once a watermark of bytes waits; below it,
#: their events are read when the poll's timeout ends, at most this late.
POLL_SECONDS = 0.1


def polling(tool: Any, flush: Callable[[], Any]) -> Callable[[int], int]:
    """``tool.poll`` followed by ``flush()``: output written per poll, not per event."""
    poll = tool.poll

    def poll_and_flush(timeout_ms: int) -> int:
        n = poll(timeout_ms)
        if n:
            flush()
        return n

    return poll_and_flush


class RingEvents:
    """``poll()`` and ``dropped`` for an :class:`lcc.ClbcBase` tool (a mixin)."""

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` and deliver waiting events; returns how many."""
        return self.ring_buffer_poll(timeout_ms)

    @property
    def dropped(self) -> int:
        """Events the kernel side could not send because the ring buffer was full."""
        return int(self.bss.dropped)
