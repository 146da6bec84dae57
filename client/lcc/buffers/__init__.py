"""Ring buffers and perf buffers: events from BPF programs to Python.

=============================  ==============================================
module                         what it holds
=============================  ==============================================
:mod:`lcc.buffers.ring`        :class:`RingBuffer`: callbacks, or ``read()``
:mod:`lcc.buffers.perf`        :class:`PerfBuffer` (libbpf ``perf_buffer``)
:mod:`lcc.buffers.poll`        :class:`PollGroup`: many buffers, one epoll fd
:mod:`lcc.buffers.batch`       :class:`EventBatch`: ``RingBuffer.read_batch()``'s columns
:mod:`lcc.buffers._consumer`   what the libbpf-based consumers share
=============================  ==============================================

A buffer is given what it needs and nothing more: the map's fd, size and
name, the event codec (or a function that returns it when the first event
comes), and ``adopt``, the owner's hook that takes the buffer's native part
(libbpf consumer, mappings, epoll fds) to close it with the object.  It
knows nothing of maps (:mod:`lcc.maps` opens buffers; never the reverse).

Ring buffers are read straight from the map's memory on x86_64
(:mod:`lcc.ringbuf_mmap`, several million events a second) and through
libbpf's ``ring_buffer`` elsewhere; perf buffers use libbpf's
``perf_buffer``.  An exception raised by the user's callback stops the poll
and is re-raised from :meth:`poll`/:meth:`consume`; nothing is swallowed.
Each buffer exposes :meth:`fileno` (an epoll fd that becomes readable when
events wait) for ``selectors`` or asyncio, and so does a :class:`PollGroup`.
"""

from __future__ import annotations

from .. import _lazy

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from .perf import PerfBuffer
    from .poll import PollGroup
    from .ring import RingBuffer

__all__ = ["PerfBuffer", "PollGroup", "RingBuffer"]

# Each kind is imported when first used: a tool that has only ring buffers
# never loads the perf buffer's module, nor the poll group if it never polls.
_MODULES = {"PerfBuffer": "perf", "PollGroup": "poll", "RingBuffer": "ring"}


__getattr__ = _lazy.exports(globals(), _MODULES)
