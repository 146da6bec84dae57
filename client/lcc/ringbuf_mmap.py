"""A BPF ring buffer consumed straight from its memory mapping, in Python.

libbpf's ``ring_buffer__poll`` calls back into Python once per record
through ctypes, which costs more than decoding the record.  This module
reads the ring itself, as libbpf does in C:

  map offset 0            consumer page, mapped RW: ``u64 consumer_pos``
  map offset PAGE_SIZE    producer page, mapped RO: ``u64 producer_pos``
  map offset 2*PAGE_SIZE  data pages, mapped RO and *twice in a row*, so a
                          record that runs past the end of the ring reads on
                          contiguously in the second copy

Each record is an 8-byte header (``u32 len`` with BUSY ``1 << 31`` while the
producer still writes it and DISCARD ``1 << 30`` once it is thrown away,
then ``u32 pgoff``) followed by ``len`` bytes, the whole rounded up to 8.

:class:`RingReader` walks committed records between ``consumer_pos`` and
``producer_pos``.  It hands them on in *runs* of equal-length records found
by checking their headers in bulk (one strided copy and one compare), and
stores ``consumer_pos`` after each run.  :class:`EventDelivery` turns a run
into callback calls at C speed where it can: ``struct.iter_unpack`` over the
run with a format that skips each header, the event built from each tuple
by the codec's flat plan (:attr:`lcc.codecs.Codec.flat`), and ``map``
calling the user's callback.

Memory ordering: the producer publishes ``producer_pos`` after writing a
record's header and flips BUSY off after writing its data; x86_64 (TSO)
keeps loads in program order, so plain loads from Python see a record's
data once they see its header committed, and one aligned 8-byte store
publishes ``consumer_pos``.  :func:`supported` says whether this machine
qualifies; elsewhere lcc uses libbpf's consumer.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter

from .codecs import Codec
from .errors import ClosedError, NotSupported, from_errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

BUSY = 1 << 31
DISCARD = 1 << 30
LEN_MASK = DISCARD - 1
HDR_SIZE = 8

# Records per run at most: consumer_pos moves on at least this often, so a
# busy producer gets its space back while a long backlog is delivered.
MAX_RUN = 4096

_ORDER = "<" if sys.byteorder == "little" else ">"
_exhaust = deque(maxlen=0).extend  # runs an iterator to its end at C speed
_first = itemgetter(0)


def supported() -> bool:
    """Whether the mmap consumer is safe here: an x86_64 process (total store
    order, aligned 8-byte loads and stores are atomic)."""
    # The interpreter's own target (no system call), which is the process's
    # instruction set even where the kernel's (uname) differs.
    arch = getattr(sys.implementation, "_multiarch", "") or os.uname().machine
    return arch.split("-", 1)[0] == "x86_64"


def record_size(length: int) -> int:
    """Bytes a record of ``length`` data bytes takes in the ring (header included)."""
    return ((length & LEN_MASK) + HDR_SIZE + 7) & ~7


# A delivery takes (run, count, length) and returns (records consumed, error).
Deliver = Callable[[memoryview, int, int], "tuple[int, BaseException | None]"]


class RingReader:
    """The consumer side of one ring buffer, over three memory views.

    ``consumer`` (writable) and ``producer`` start with the u64 positions;
    ``data`` holds the ring twice in a row (``2 * size`` bytes).  The views
    may be mmaps of a ring buffer map or, in tests, plain bytearrays.
    """

    def __init__(self, consumer: memoryview, producer: memoryview, data: memoryview,
                 size: int) -> None:
        if size <= 0 or size & (size - 1) or size % 8:
            raise ValueError(f"ring size must be a power of two, not {size}")
        data = data.cast("B") if data.format != "B" else data
        if len(data) < 2 * size:
            raise ValueError(f"the data view holds {len(data)} bytes; a ring of {size} "
                             f"needs it mapped twice ({2 * size})")
        self.size = size
        self._mask = size - 1
        self._cons = consumer[:8].cast("Q")
        self._prod = producer[:8].cast("Q")
        self._data = data[:2 * size]
        self._hdr = self._data.cast("I")
        self._patterns: dict[int, bytes] = {}
        self.delivered = 0  # records handed on, over the reader's life

    @property
    def consumer_pos(self) -> int:
        return self._cons[0]

    @property
    def producer_pos(self) -> int:
        return self._prod[0]

    def pending(self) -> int:
        """Bytes between the consumer and producer positions (records not yet consumed)."""
        return self._prod[0] - self._cons[0]

    def drain(self, deliver: Deliver, limit: int = 0) -> int:
        """Hand every committed record on to ``deliver``; returns how many it consumed.

        Stops at a record the producer is still writing (BUSY), when the
        ring is empty, after ``limit`` records (0: no limit), or after one
        ring's worth of bytes (so that a producer that never pauses cannot
        keep this call going forever).  Discarded records are skipped.  If
        ``deliver`` reports an error, consumer_pos covers the records it
        consumed and the error is raised.
        """
        cons_v, prod_v, hdr, data, mask = self._cons, self._prod, self._hdr, self._data, self._mask
        cons = start = cons_v[0]
        total = 0
        budget = limit if limit > 0 else 1 << 62
        while True:
            prod = prod_v[0]
            if cons >= prod:
                return total
            while cons < prod:
                off = cons & mask
                length = hdr[off >> 2]
                if length & BUSY:
                    return total  # committed in order: wait for this one
                if length & DISCARD:
                    cons += ((length & LEN_MASK) + 15) & ~7
                    cons_v[0] = cons
                    continue
                rsize = (length + 15) & ~7
                n = (prod - cons) // rsize
                if n > MAX_RUN:
                    n = MAX_RUN
                elif n < 1:  # a header beyond producer_pos: not a record we may read
                    return total
                if n > budget - total:
                    n = budget - total
                if n > 1:
                    n = self._run_length(off, length, rsize, n)
                done, err = deliver(data[off:off + n * rsize], n, length)
                cons += done * rsize
                cons_v[0] = cons
                total += done
                self.delivered += done
                if err is not None:
                    raise err
                if total >= budget:
                    return total
            if cons - start >= self.size:
                return total

    def _run_length(self, off: int, length: int, rsize: int, n: int) -> int:
        """How many records from ``off`` on (at most ``n``) have header ``length``.

        Reads the n candidate headers with one strided copy.  Up to the first
        mismatch each candidate really is a header (the records before it had
        this size), so the first mismatch ends the run.
        """
        step = rsize >> 2
        i = off >> 2
        got = self._hdr[i:i + n * step:step].tobytes()
        pat = self._patterns.get(length)
        if pat is None:
            pat = self._patterns[length] = struct.pack("=I", length) * MAX_RUN
        if got == pat[:4 * n]:
            return n
        lo, hi = 1, n - 1  # the first header matched (it is ``length``)
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if got[:4 * mid] == pat[:4 * mid]:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def release(self) -> None:
        """Drop the views (the mappings behind them can then be closed)."""
        for v in (self._hdr, self._data, self._cons, self._prod):
            try:
                v.release()
            except BufferError:  # exported to an iterator a traceback still holds
                pass


class EventDelivery:
    """Decodes runs of records and calls the user's callback with each event.

    ``codec`` decodes the events (``None`` or ``raw=True``: the callback gets
    bytes).  ``bcc_style`` calls ``callback(None, event, size)`` instead of
    ``callback(event)``.  Records shorter than the event type are padded
    with zeros; longer ones decode their first ``codec.size`` bytes
    (:meth:`Codec.decode_record`).  The callback may be a C function such
    as ``deque.append``: :meth:`lcc.buffers.RingBuffer.read` collects
    events that way.
    """

    def __init__(self, callback: Callable[..., Any], codec: Codec | None, *, raw: bool = False,
                 bcc_style: bool = False) -> None:
        self.callback = callback
        self.codec = None if raw else codec
        self.bcc_style = bcc_style
        # length -> (struct.Struct or None, event builder); see _plan
        self._plans: dict[int, tuple[struct.Struct | None, Callable[..., Any] | None]] = {}

    def __call__(self, run: memoryview, n: int, length: int) -> tuple[int, BaseException | None]:
        plan = self._plans.get(length)
        if plan is None:
            if len(self._plans) >= 1024:  # records of many sizes: keep the cache bounded
                self._plans.clear()
            plan = self._plans[length] = self._plan(length)
        st, build = plan
        counter: Iterator[Any]
        if st is not None:
            counter = st.iter_unpack(run)
            events = counter if build is None else map(build, counter)
        else:  # member-by-member codec: decode at each record's offset
            rsize = record_size(length)
            counter = iter(range(HDR_SIZE, n * rsize, rsize))
            events = map(self.codec.decode, repeat(run), counter)  # type: ignore[union-attr]
        cb = self.callback
        calls = map(cb, repeat(None), events, repeat(length)) if self.bcc_style else map(cb, events)
        try:
            _exhaust(calls)
        except BaseException as e:  # noqa: BLE001 - handed to drain(), which raises it
            # The record whose callback raised was delivered (as one that failed
            # to decode was consumed): count it, so the next poll starts after
            # it.  Drop the views on the ring before the traceback, which keeps
            # this frame, leaves.
            done = n - counter.__length_hint__()
            run = counter = events = calls = None  # type: ignore[assignment]
            return done, e
        return n, None

    def _plan(self, length: int) -> tuple[struct.Struct | None, Callable[..., Any] | None]:
        """How to turn records of ``length`` bytes into events."""
        rsize = record_size(length)
        pad = rsize - HDR_SIZE
        c = self.codec
        if c is None:
            return struct.Struct(f"{_ORDER}{HDR_SIZE}x{length}s{pad - length}x"), _first
        if length < c.size:  # short record: zero-filled up to the event size
            def short(t: tuple, dec=c.decode_record) -> Any:
                return dec(t[0])

            return struct.Struct(f"{_ORDER}{HDR_SIZE}x{length}s{pad - length}x"), short
        if c.flat is None:
            return None, None
        fmt, build = c.flat
        body = f"{HDR_SIZE}x{fmt}{pad - c.size}x"
        # Native mode copies each field with one load; use it when it lays the
        # record out exactly as the explicit little/big-endian format does.
        order = "@" if struct.calcsize("@" + body) == struct.calcsize(_ORDER + body) else _ORDER
        return struct.Struct(order + body), build


class MmapRing:
    """One ring buffer map, mapped into this process and consumed by :class:`RingReader`.

    ``size`` is the ring's size in the kernel: the map's max_entries as
    libbpf reports it after load (libbpf rounds ring sizes up to a power of
    two pages before it creates the map).  Owns the two mappings and an
    epoll fd on the map (readable while records wait); :meth:`close`
    releases them.  Raises :class:`BpfError` when the kernel refuses the
    mappings (a kernel without mmap-able ring buffers).

    It holds native resources only: the delivery that calls the user's
    callback is passed to :meth:`consume` and :meth:`poll`, so whoever
    closes the mappings (the BPF object, a tool's finalizer) never keeps a
    callback alive.
    """

    def __init__(self, map_fd: int, size: int, name: str) -> None:
        self.name = name
        page = mmap.PAGESIZE
        self._maps: list[mmap.mmap] = []
        self._epoll: select.epoll | None = None
        try:
            cons = mmap.mmap(map_fd, page, access=mmap.ACCESS_WRITE, offset=0)
            self._maps.append(cons)
            data = mmap.mmap(map_fd, page + 2 * size, access=mmap.ACCESS_READ, offset=page)
            self._maps.append(data)
        except OSError as e:
            self._unmap()
            raise from_errno(e.errno or errno.EINVAL, f"mapping ring buffer '{name}'",
                             hint="ring buffers need Linux 5.8 or newer") from None
        whole = memoryview(data)
        try:
            self.reader = RingReader(memoryview(cons), whole[:page], whole[page:], size)
        except ValueError as e:  # not a ring layout this reader knows
            problem = str(e)
        else:
            problem = ""
        finally:
            whole.release()
        if problem:
            self._unmap()
            raise NotSupported("ringbuf mmap", f"ring buffer '{name}': {problem}")
        self._epoll = select.epoll(1)
        self._epoll.register(map_fd, select.EPOLLIN)

    @property
    def closed(self) -> bool:
        return self._epoll is None

    def _check(self) -> None:
        if self._epoll is None:
            raise ClosedError(f"ring buffer '{self.name}' is closed")

    def consume(self, deliver: Deliver, limit: int = 0) -> int:
        """Hand the records already committed to ``deliver`` (at most ``limit``,
        0: no limit); returns how many."""
        self._check()
        return self.reader.drain(deliver, limit)

    def poll(self, timeout_ms: int, deliver: Deliver, limit: int = 0) -> int:
        """Deliver waiting records, else wait up to ``timeout_ms`` (-1: forever) once."""
        self._check()
        n = self.reader.drain(deliver, limit)
        if n or timeout_ms == 0:
            return n
        self.wait(timeout_ms)
        return self.reader.drain(deliver, limit)

    def wait(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` (-1: forever) for the kernel to signal records."""
        self._check()
        ep: select.epoll = self._epoll  # type: ignore[assignment]
        ep.poll(timeout_ms / 1000 if timeout_ms > 0 else timeout_ms, 1)
        self._check()

    @property
    def delivered(self) -> int:
        return self.reader.delivered

    def fileno(self) -> int:
        if self._epoll is None:
            raise ClosedError(f"ring buffer '{self.name}' is closed")
        return self._epoll.fileno()

    def _unmap(self) -> None:
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass  # a view is still referenced (a traceback); unmapped when collected
        self._maps.clear()

    def close(self) -> None:
        if self._epoll is None:
            return
        self._epoll.close()
        self._epoll = None
        self.reader.release()
        self._unmap()
