"""RingBuffer: a BPF ring buffer map's consumer, delivering to a callback or read in turn."""

from __future__ import annotations

import os
import time
from collections import deque

from .. import _libbpf, ringbuf_mmap
from ..errors import BpfError, ClosedError, LccError
from ._consumer import _UNSET, _Decoder, _LibbpfConsumer, _positional_arity, codec_getter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from ..codecs import Codec
    from ._consumer import CodecSource
    from .batch import EventBatch

# Records read() takes from the ring at a time, decoded and kept in order for
# the next calls: the ring's space goes back to the producer in batches, and
# memory stays bounded whatever the ring's size.
READ_AHEAD = 1024


def _ring_backend(requested: str | None) -> str:
    """"mmap" or "libbpf": the caller's choice, else LCC_RINGBUF, else mmap where it is safe."""
    choice = requested or os.environ.get("LCC_RINGBUF") or "auto"
    if choice not in ("auto", "mmap", "libbpf"):
        raise LccError(f"unknown ring buffer backend {choice!r} (use 'mmap' or 'libbpf')")
    if choice == "libbpf" or not ringbuf_mmap.supported():
        return "libbpf"
    return "mmap"


class RingBuffer:
    """A BPF ring buffer map's consumer.

    ``fd``, ``size`` (max_entries after load) and ``name`` are the map's;
    ``codec`` decodes the events (or is a function that returns the codec
    when the first event comes; None: bytes); ``adopt`` takes the native
    part (mappings or libbpf's consumer) so that its owner closes it.

    Events go to the callback set by :meth:`add` through :meth:`poll` and
    :meth:`consume`, or, pulled, to the caller of :meth:`read` and
    :meth:`events`.  Use one or the other: events that ``read()`` took from
    the ring ahead of time are kept for ``read()``.

    Two backends deliver the same events with the same semantics:
    ``"mmap"`` (x86_64, the default there) reads records straight from the
    map's memory and decodes runs of them at C speed (:mod:`lcc.ringbuf_mmap`);
    ``"libbpf"`` (other architectures, or ``backend="libbpf"`` /
    ``LCC_RINGBUF=libbpf``) is libbpf's ``ring_buffer`` with one ctypes
    callback per record.  If the kernel refuses the mappings lcc falls back
    to libbpf.  :attr:`backend` says which one runs; :attr:`delivered`
    counts the events taken from the ring.
    """

    kind = "ring"

    def __init__(self, fd: int, size: int, name: str, *, codec: CodecSource,
                 adopt: Callable[[Any], None], backend: str | None = None) -> None:
        self.name = name
        self.backend = _ring_backend(backend)
        self._get_codec = codec_getter(codec)
        self._codec: Any = _UNSET  # asked for when the first event is decoded
        # mmap backend: the mappings (native, handed to the owner to close) and,
        # apart from them, the deliveries that call the callback or fill _pending.
        self._fast: ringbuf_mmap.MmapRing | None = None
        self._delivery: ringbuf_mmap.EventDelivery | None = None
        self._pull: ringbuf_mmap.EventDelivery | None = None
        self._slow: _LibbpfRing | None = None
        self._callback: Callable[..., Any] | None = None
        self._raw = False
        self._bcc_style = False
        self._closed = False
        self._pending: deque[Any] = deque()  # events read() took and has not returned yet
        if self.backend == "mmap":
            try:
                self._fast = ringbuf_mmap.MmapRing(fd, size, name)
            except BpfError as e:
                import logging  # only on this fallback path
                logging.getLogger("lcc.buffers").info(
                    "ring buffer '%s': %s; using libbpf's consumer", name, e)
                self.backend = "libbpf"
            else:
                adopt(self._fast)
        if self._fast is None:
            self._slow = _LibbpfRing(fd, name, self._event_codec, adopt)

    @property
    def callback(self) -> Callable[..., Any] | None:
        """The callback events go to (None: they wait for :meth:`read`)."""
        return self._callback

    def add(self, callback: Callable[..., Any] | None, *, raw: bool = False) -> None:
        """Set the callback (one per ring buffer; a second call replaces it).

        ``callback(event)``, or BCC-style ``callback(ctx, event, size)`` for
        a callback that takes three arguments; None leaves the events to
        :meth:`read`.  ``raw=True`` hands on the records' bytes, undecoded
        (to :meth:`read` too).
        """
        self._check()
        self._callback, self._raw = callback, raw
        self._bcc_style = callback is not None and _positional_arity(callback) >= 3
        # The deliveries are made when first needed: they need the event
        # codec, which the map builds from BTF only when first asked for.
        self._delivery = self._pull = None
        if self._slow is not None:
            self._slow.add(callback, raw=raw, bcc_style=self._bcc_style)

    def _event_codec(self) -> Codec | None:
        c = self._codec
        if c is _UNSET:
            c = self._codec = self._get_codec()
        return c

    def set_codec(self, codec: Codec | None) -> None:
        """Decode events with ``codec`` from now on (``RingBufMap.set_event_type``)."""
        self._codec = codec
        self._delivery = self._pull = None
        if self._slow is not None:
            self._slow.set_codec(codec)

    @property
    def closed(self) -> bool:
        return self._closed or (self._fast.closed if self._fast is not None
                                else self._slow is None or self._slow.closed)

    def _check(self) -> None:
        if self.closed:
            raise ClosedError(f"ring buffer '{self.name}' is closed")

    def _fast_delivery(self) -> ringbuf_mmap.EventDelivery:
        d = self._delivery
        if d is None:
            if self._callback is None:
                raise LccError(f"ring buffer '{self.name}' has no callback: give one to "
                               "open_ring_buffer(), or take its events with read()")
            d = self._delivery = ringbuf_mmap.EventDelivery(
                self._callback, self._event_codec(), raw=self._raw, bcc_style=self._bcc_style)
        return d

    def poll(self, timeout_ms: int = -1) -> int:
        """Deliver waiting events, else wait up to ``timeout_ms`` (-1: forever); returns how many.

        An exception raised by the callback stops the delivery and is
        re-raised here; the events after it wait for the next poll.
        """
        self._check()
        if self._fast is not None:
            return self._fast.poll(int(timeout_ms), self._fast_delivery())
        return self._slow.poll(int(timeout_ms))  # type: ignore[union-attr]

    def consume(self) -> int:
        """Deliver the events already waiting, without blocking; returns how many."""
        self._check()
        if self._fast is not None:
            return self._fast.consume(self._fast_delivery())
        return self._slow.consume()  # type: ignore[union-attr]

    # -- pulling events ----------------------------------------------------------

    def read(self, timeout: float | None = None) -> Any:
        """The next event, or None if none comes within ``timeout`` seconds.

        ``timeout=None`` waits as long as it takes, 0 does not wait.  The
        event is decoded as a callback would get it (bytes with ``raw=True``
        or without an event type).  Events come in the order the kernel
        committed them; they are taken from the ring up to
        :data:`READ_AHEAD` at a time and kept here until read.  Raises
        ClosedError once the buffer (or its tool) is closed.
        """
        self._check()
        q = self._pending
        if q:
            return q.popleft()
        if timeout is None:
            while not self._fill(-1):
                pass
            return q.popleft()
        deadline = time.monotonic() + timeout
        wait_ms = 0  # first take what is there, without a system call to wait
        while not self._fill(wait_ms):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait_ms = max(1, int(left * 1000 + 0.999))  # round up: never return early
        return q.popleft()

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Iterate over events as they come: ``for e in ring.events(timeout=1): ...``.

        Ends when no event comes within ``timeout`` seconds of the previous
        one (0: once the events already waiting are read); with None it
        waits for ever (break out of the loop, or close the tool: ClosedError).
        """
        read = self.read
        while True:
            e = read(timeout)
            if e is None:
                return
            yield e

    def _fill(self, timeout_ms: int) -> int:
        """Take up to READ_AHEAD events into _pending, waiting up to ``timeout_ms``
        (0: not at all) if none wait; returns how many."""
        if self._fast is None:
            return self._slow.pull(self._pending.append, READ_AHEAD,  # type: ignore[union-attr]
                                   timeout_ms)
        d = self._pull
        if d is None:
            d = self._pull = ringbuf_mmap.EventDelivery(
                self._pending.append, self._event_codec(), raw=self._raw)
        return self._fast.poll(timeout_ms, d, READ_AHEAD)

    def read_batch(self, max_events: int = 65536, timeout: float | None = 0, *,
                   use_numpy: bool | None = None) -> EventBatch:
        """Up to ``max_events`` waiting events at once, decoded into columns.

        Returns an :class:`lcc.buffers.batch.EventBatch`: ``batch["pid"]``
        holds every event's ``pid`` in commit order (numpy arrays with the
        ``numpy`` extra installed and an event type it can view, else
        tuples; ``use_numpy`` True requires numpy, False never uses it).
        Only numpy columns are a bulk decode (no object per event); tuple
        columns are the per-event decoding transposed, slower than a
        callback (about half its rate): a convenience, not a fast path.
        Waits up to ``timeout`` seconds (None: until events come; 0, the
        default: not at all) when none wait; an empty batch after that.
        The records are copied out of the ring a run at a time and their
        space goes back to the producer at once.  Not for a ring whose
        events ``read()`` has taken ahead (LccError): use one or the other.
        """
        from . import batch as _batch  # here: only batch readers load it (and maybe numpy)
        self._check()
        if self._pending:
            raise LccError(f"ring buffer '{self.name}': read() holds events taken ahead; "
                           "take them with read() before read_batch()")
        limit = max(1, int(max_events))
        wait_ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        codec = self._event_codec()
        if self._fast is None:
            events: list[Any] = []
            self._slow.pull(events.append, limit, wait_ms)  # type: ignore[union-attr]
            return _batch.from_events(events, codec, self._raw)
        runs: list[list[Any]] = []  # [bytearray, records, record length]

        def take(run: memoryview, n: int, length: int) -> tuple[int, None]:
            # Copied out (then the space goes back to the producer), runs of one
            # record length into one buffer: one copy of each byte, in total.
            last = runs[-1] if runs else None
            if last is not None and last[2] == length:
                last[0] += run
                last[1] += n
            else:
                runs.append([bytearray(run), n, length])
            return n, None

        self._fast.poll(wait_ms, take, limit)
        return _batch.decode_runs([(r[0], r[1], r[2]) for r in runs], codec, raw=self._raw,
                                  use_numpy=use_numpy)

    # -- state ---------------------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Events taken from the ring so far (by the callback or by read())."""
        impl = self._fast or self._slow
        return impl.delivered if impl is not None else 0

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        self._check()
        return (self._fast or self._slow).fileno()  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop consuming and release the mappings or libbpf's consumer. Idempotent."""
        self._closed = True
        self._pending.clear()
        if self._fast is not None:
            self._fast.close()
        if self._slow is not None:
            self._slow.close()


class _LibbpfRing(_LibbpfConsumer):
    """libbpf's ``ring_buffer``: one ctypes callback per record."""

    _PREFIX, _KIND = "ring_buffer", "ring buffer"

    def __init__(self, fd: int, name: str, codec: Callable[[], Codec | None],
                 adopt: Callable[[Any], None]) -> None:
        self.name = name
        self._adopt = adopt
        self._native = None
        self._error: BaseException | None = None
        self._decoder = _Decoder(codec)
        # (ptr, size) -> None, or -1 to stop the poll: the callback's
        # delivery, or pull()'s while it runs
        self._deliver: Callable[[int, int], int | None] | None = None
        self.delivered = 0
        self._c_cb = _libbpf.RINGBUF_SAMPLE_FN(self._on_sample)
        self._opened(_libbpf.lib().ring_buffer__new(fd, self._c_cb, None, None))

    def add(self, callback: Callable[..., Any] | None, *, raw: bool, bcc_style: bool) -> None:
        self._decoder.raw = raw
        dec = self._decoder
        if callback is None:
            self._deliver = None
        elif bcc_style:
            def deliver(ptr: int, size: int) -> None:
                callback(None, dec(ptr, size), size)
            self._deliver = deliver
        else:
            def deliver(ptr: int, size: int) -> None:
                callback(dec(ptr, size))
            self._deliver = deliver

    def set_codec(self, codec: Codec | None) -> None:
        self._decoder.set_codec(codec)

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        self.delivered += 1  # a callback that raises has had its event too
        try:
            return self._deliver(data, size) or 0  # type: ignore[misc]
        except BaseException as e:  # noqa: BLE001 - re-raised from poll()
            self._error = e
            return -1  # stops ring_buffer__poll/consume; the record counts as consumed

    def _check_callback(self) -> None:
        if self._deliver is None:
            raise LccError(f"ring buffer '{self.name}' has no callback: give one to "
                           "open_ring_buffer(), or take its events with read()")

    def poll(self, timeout_ms: int = -1) -> int:
        self._check_callback()
        return super().poll(timeout_ms)

    def consume(self) -> int:
        self._check_callback()
        return super().consume()

    def pull(self, sink: Callable[[Any], None], limit: int, timeout_ms: int) -> int:
        """Decode up to ``limit`` events into ``sink``, waiting up to ``timeout_ms``
        (0: not at all) if none wait; returns how many."""
        ptr = self._check()
        before = self.delivered
        dec, room = self._decoder, [limit]

        def take(data: int, size: int) -> int:
            sink(dec(data, size))
            room[0] -= 1
            return -1 if room[0] <= 0 else 0  # -1: stop; this record is consumed

        # The callback's delivery steps aside while read() takes events, so
        # that the callback path pays nothing for read().
        saved, self._deliver = self._deliver, take
        try:
            if timeout_ms == 0:
                ret = self._fn("consume")(ptr)
            else:
                ret = self._fn("poll")(ptr, int(timeout_ms))
        finally:
            self._deliver = saved
        if room[0] <= 0 and ret < 0 and self._error is None:
            ret = 0  # stopped by _on_sample once the limit was reached
        return self._finish(ret, "reading", before)
