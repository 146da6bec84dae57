"""What the tools whose events come through a ring buffer share.

Their BPF side submits events to a ring buffer and, when it is full, counts
the event it could not send in a ``.bss`` global ``dropped``.  A tool class
lists :class:`RingEvents` before :class:`lcc.ClbcBase`::

    class TcpConnLat(RingEvents, ClbcBase): ...
"""

from __future__ import annotations


class RingEvents:
    """``poll()`` and ``dropped`` for an :class:`lcc.ClbcBase` tool (a mixin)."""

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` and deliver waiting events; returns how many."""
        return self.ring_buffer_poll(timeout_ms)

    @property
    def dropped(self) -> int:
        """Events the kernel side could not send because the ring buffer was full."""
        return int(self.bss.dropped)
