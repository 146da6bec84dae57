"""Event maps: ring buffers and perf event arrays, which carry events to user space.

An event map knows its event type (from BTF) and opens the consumer of
:mod:`lcc.buffers` on itself, handing it only what it needs: the map's fd,
size and name, the event codec, and the object's hook that closes the
consumer's native part.  The buffers know nothing of maps.
"""

from __future__ import annotations

from .. import _libbpf
from ..btf import BtfType
from ..buffers.ring import RingBuffer
from ..codecs import Codec, codec
from ..errors import LccError
from .base import Map

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

    from ..buffers.perf import PerfBuffer
    from ..object import BpfObject, MapSpec
    from .eventtypes import EventTypeGuess


#: BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_RINGBUF
EVENT_MAP_TYPES = (4, 27)


class EventMap(Map):
    """Base of maps that carry events to user space (ring buffer, perf event array).

    ``event_type`` is the BTF type of the events: the ``lbc_event`` member of
    the map definition (``LBC_RINGBUF``/``LBC_PERF_OUTPUT``), or what
    :meth:`set_event_type` named.  :meth:`event` decodes raw bytes with it.
    :attr:`buffer` is the map's open buffer (None before it is opened).
    ``on_buffer``, when set (a tool sets it), is called with the buffer each
    time it is given a callback, so that the tool can poll it with its others.
    """

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        # The event type and its codec are read from BTF when first asked for
        # (usually by the first event), not here: that is a good part of a
        # tool's start, and some tools never decode events.
        self._event_known = False
        self._event_type: BtfType | None = None
        self._event_codec: Codec | None = None
        self._buffer: RingBuffer | PerfBuffer | None = None
        self.on_buffer: Callable[[RingBuffer | PerfBuffer], None] | None = None

    def _declared_event(self) -> None:
        if not self._event_known:
            t = self._obj.btf.map_event_type(self.spec.name)
            self._event_type, self._event_codec = t, (codec(t) if t else None)
            self._event_known = True

    @property
    def event_type(self) -> BtfType | None:
        self._declared_event()
        return self._event_type

    def set_event_type(self, type_name: str | BtfType) -> None:
        """Decode events as ``type_name``: a C spelling (``"struct event"``) looked up
        in the object's BTF, then in the kernel's, or a :class:`BtfType`.

        Raises :class:`BtfError` when neither BTF has the type (clang keeps only
        the types globals, functions and maps use; ``lcc run --event-type``
        keeps the named type when it compiles).
        """
        if isinstance(type_name, str):
            from .eventtypes import find_type  # here: it imports re, which start-up avoids
            t = find_type(type_name, self._obj.btf)
        else:
            t = type_name
        self._event_type, self._event_codec = t, codec(t)
        self._event_known = True
        if self._buffer is not None:
            self._buffer.set_codec(self._event_codec)

    def guess_event_type(self, *, prefer: Iterable[str] = ()) -> EventTypeGuess | None:
        """What the events most likely are, from the sizes the programs send to this
        map (see :func:`lcc.maps.eventtypes.guess_event_type`), or None.

        Does not change :attr:`event_type`: pass ``guess.type`` to
        :meth:`set_event_type` to decode with it.  ``prefer`` names types to rank
        first (``struct event``: the structs the tool's own source defines).
        """
        from .eventtypes import guess_event_type, sites_of
        obj = self._obj
        specs = [obj.map_spec(n) for n in obj.map_names()]
        keys = {s.key_type.id for s in specs if s.key_type is not None}
        n_event = sum(1 for s in specs if s.type in EVENT_MAP_TYPES)
        return guess_event_type(obj.btf, self.spec.name, sites_of(obj.spec), event_maps=n_event,
                                exclude=keys, prefer=prefer)

    @property
    def event_codec(self) -> Codec | None:
        self._declared_event()
        return self._event_codec

    def _codec_now(self) -> Codec | None:
        """The event codec, for a buffer's first event (reads BTF then, not at open)."""
        return self.event_codec

    @property
    def buffer(self) -> RingBuffer | PerfBuffer | None:
        """The buffer opened on this map, or None."""
        return self._buffer

    def event(self, data: Any) -> Any:
        """Decode one event from bytes (or return an already decoded event as it is)."""
        if hasattr(data, "_fields"):
            return data
        c = self.event_codec
        if c is None:
            raise LccError(f"map '{self.name}' has no event type: declare it with "
                           "LBC_RINGBUF/LBC_PERF_OUTPUT or call set_event_type('struct ...')")
        if isinstance(data, int):  # a raw pointer, as libbpf hands it to C callbacks
            data = _libbpf.read_memory(data, c.size)
        return c.decode_record(data)

    def _announce(self) -> None:
        if self.on_buffer is not None and self._buffer is not None:
            self.on_buffer(self._buffer)

    def _require_buffer(self, verb: str) -> Any:
        if self._buffer is None:
            raise LccError(f"call {verb}() on map '{self.name}' first")
        return self._buffer


class RingBufMap(EventMap):
    """BPF_MAP_TYPE_RINGBUF."""

    def open_ring_buffer(self, callback: Callable[..., Any] | None = None, *,
                         raw: bool = False) -> RingBuffer:
        """Start delivering events to ``callback``, or open the ring for :meth:`RingBuffer.read`.

        ``callback(event)`` gets the decoded event; a callback that takes three
        arguments is called BCC-style as ``callback(ctx, event, size)``.  With
        ``raw=True`` it gets bytes instead.  Without a callback, the events
        wait for :meth:`RingBuffer.read` (or ``for e in buf.events()``).
        Returns the :class:`RingBuffer` (one per map; a second call replaces
        the callback).
        """
        if self._buffer is None:
            self._buffer = RingBuffer(self.fd, self.max_entries, self.name,
                                      codec=self._codec_now, adopt=self._obj.adopt_buffer)
        self._buffer.add(callback, raw=raw)  # type: ignore[union-attr]
        if callback is not None:
            self._announce()
        return self._buffer  # type: ignore[return-value]

    def ring_buffer_poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` for events and deliver them; returns how many."""
        return self._require_buffer("open_ring_buffer").poll(timeout_ms)

    def ring_buffer_consume(self) -> int:
        """Deliver the events already waiting, without blocking."""
        return self._require_buffer("open_ring_buffer").consume()


class PerfEventArrayMap(EventMap):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY."""

    def open_perf_buffer(self, callback: Callable[..., Any],
                         lost_cb: Callable[[int], Any] | None = None,
                         page_cnt: int | None = None, *, pages: int | None = None,
                         raw: bool = False, lost: Callable[..., Any] | None = None) -> PerfBuffer:
        """Start delivering events to ``callback``.

        ``callback(cpu, event, size)`` as in pyLCC and BCC (``event`` is the
        decoded event; ``ctypes.string_at(event, size)`` and
        ``map.event(...)`` still work on it), or ``callback(event)``.
        ``lost_cb(count)`` (pyLCC spells it ``lost=``) is told about samples
        the kernel dropped; they are also counted in :attr:`PerfBuffer.lost`.
        ``pages`` per CPU defaults to the map's ``LBC_PERF_OUTPUT`` page
        count, else 64.
        """
        if self._buffer is not None:
            raise LccError(f"map '{self.name}' already has an open perf buffer")
        from ..buffers.perf import PerfBuffer  # here: only tools with perf buffers load it
        n = pages or page_cnt or self._obj.btf.map_uint_field(self.name, "lbc_pages") or 64
        self._buffer = PerfBuffer(self.fd, self.name, callback, codec=self._codec_now,
                                  adopt=self._obj.adopt_buffer, lost_cb=lost_cb or lost,
                                  pages=n, raw=raw)
        self._announce()
        return self._buffer

    def perf_buffer_poll(self, timeout_ms: int | None = None, *,
                         timeout: int | None = None) -> int:
        """Poll the perf buffer (``timeout=`` is pyLCC's spelling of ``timeout_ms``).

        With a timeout (BCC style), wait at most ``timeout_ms`` once and return
        the number of events delivered.  Without one (pyLCC style), keep
        polling until a callback raises, KeyboardInterrupt, or the buffer is
        closed (by the tool's close() or finalizer, from any thread); then
        return the number of events delivered.
        """
        buf = self._require_buffer("open_perf_buffer")
        if timeout_ms is None:
            timeout_ms = timeout
        if timeout_ms is not None:
            return buf.poll(timeout_ms)
        total = 0
        while not buf.closed:
            total += buf.poll(1000)
        return total

    def perf_buffer_consume(self) -> int:
        return self._require_buffer("open_perf_buffer").consume()
