"""Ring buffers and perf buffers: events from BPF programs to Python callbacks.

A buffer owns its consumer, decodes each event with the map's BTF event
type, and calls the user's callback.  Ring buffers are read straight from
the map's memory on x86_64 (:mod:`lcc.ringbuf_mmap`, several million events
a second) and through libbpf's ``ring_buffer`` elsewhere; perf buffers use
libbpf's ``perf_buffer``.  An exception raised by the user's callback stops
the poll and is re-raised from :meth:`poll`/:meth:`consume`; nothing is
swallowed.  Each buffer exposes :meth:`fileno` (an epoll fd that becomes
readable when events wait) for ``selectors`` or asyncio.
"""

from __future__ import annotations

import errno
import os

from . import _libbpf, ringbuf_mmap
from .codecs import Codec
from .errors import BpfError, ClosedError, LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .maps import PerfEventArrayMap, RingBufMap


def _positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (bound methods exclude self); 99 for *args."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is not None and not isinstance(fn, type):  # functions, lambdas, bound methods
        if code.co_flags & 0x04:  # CO_VARARGS
            return 99
        return code.co_argcount - (1 if hasattr(fn, "__self__") else 0)
    import inspect  # other callables (partials, builtins, objects with __call__)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class _Decoder:
    """Turns a (pointer, size) sample into what the callback wants."""

    def __init__(self, codec: Codec | None, raw: bool) -> None:
        self.set(codec, raw)

    def set(self, codec: Codec | None, raw: bool) -> None:
        self.raw = raw or codec is None
        self.codec = codec
        self.size = codec.size if codec is not None else 0

    def __call__(self, ptr: int, size: int) -> Any:
        data = _libbpf.read_memory(ptr, size)
        if self.raw:
            return data
        if size < self.size:
            data = data.ljust(self.size, b"\0")
        return self.codec.decode(data, 0)  # type: ignore[union-attr]


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

    Two backends deliver the same events with the same semantics:
    ``"mmap"`` (x86_64, the default there) reads records straight from the
    map's memory and decodes runs of them at C speed (:mod:`lcc.ringbuf_mmap`);
    ``"libbpf"`` (other architectures, or ``backend="libbpf"`` /
    ``LCC_RINGBUF=libbpf``) is libbpf's ``ring_buffer`` with one ctypes
    callback per record.  If the kernel refuses the mappings lcc falls back
    to libbpf.  :attr:`backend` says which one runs; :attr:`events` counts
    the events delivered.
    """

    def __init__(self, map_: RingBufMap, *, backend: str | None = None) -> None:
        self._map = map_
        self.backend = _ring_backend(backend)
        # mmap backend: the mappings (native, handed to the object to close) and,
        # apart from them, the delivery that calls the user's callback.
        self._fast: ringbuf_mmap.MmapRing | None = None
        self._delivery: ringbuf_mmap.EventDelivery | None = None
        self._slow: _LibbpfRing | None = None
        self._callback: Callable[..., Any] | None = None
        self._raw = False
        self._bcc_style = False
        self._closed = False

    def add(self, callback: Callable[..., Any], *, raw: bool = False) -> None:
        """Set the callback (one per ring buffer; a second call replaces it)."""
        if self._closed:
            raise ClosedError(f"ring buffer '{self._map.name}' is closed")
        self._callback, self._raw = callback, raw
        if self.backend == "mmap" and self._fast is None:
            try:
                self._fast = ringbuf_mmap.MmapRing(self._map.fd, self._map.max_entries,
                                                   self._map.name)
            except BpfError as e:
                import logging  # only on this fallback path
                logging.getLogger("lcc.buffers").info(
                    "ring buffer '%s': %s; using libbpf's consumer", self._map.name, e)
                self.backend = "libbpf"
            else:
                self._map._adopt_native(self._fast)
        if self._fast is not None:
            # The delivery is made by the first poll: it needs the event
            # codec, which the map builds from BTF only when first asked for.
            self._bcc_style = _positional_arity(callback) >= 3
            self._delivery = None
            return
        if self._slow is None:
            self._slow = _LibbpfRing(self._map)
        self._slow.add(callback, raw=raw)

    def set_codec(self, codec: Codec) -> None:
        """Decode events with ``codec`` from now on (``RingBufMap.set_event_type``)."""
        if self._fast is not None and self._callback is not None:
            self._delivery = ringbuf_mmap.EventDelivery(
                self._callback, codec, raw=self._raw, bcc_style=self._bcc_style)
        if self._slow is not None:
            self._slow.set_codec(codec)

    def _check(self) -> None:
        if self._closed or (self._fast is None and self._slow is None) \
                or (self._fast is not None and self._fast.closed):
            raise ClosedError(f"ring buffer '{self._map.name}' is closed")

    def _fast_delivery(self) -> ringbuf_mmap.EventDelivery:
        d = self._delivery
        if d is None:
            d = self._delivery = ringbuf_mmap.EventDelivery(
                self._callback, self._map.event_codec,  # type: ignore[arg-type]
                raw=self._raw, bcc_style=self._bcc_style)
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

    @property
    def events(self) -> int:
        """Events delivered to the callback so far."""
        impl = self._fast or self._slow
        return impl.events if impl is not None else 0

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        self._check()
        return (self._fast or self._slow).fileno()  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop consuming and release the mappings or libbpf's consumer. Idempotent."""
        self._closed = True
        if self._fast is not None:
            self._fast.close()
        if self._slow is not None:
            self._slow.close()


class _LibbpfHandle:
    """A libbpf ``ring_buffer`` or ``perf_buffer``: its pointer and the function
    that frees it.

    The native part of a consumer, kept apart from the Python callbacks (and
    the ctypes trampolines into them) so that the BPF object, and through it
    a tool's finalizer, can free it without keeping any callback alive.
    libbpf's ``*__free`` functions never call back into Python.
    """

    __slots__ = ("ptr", "_free")

    def __init__(self, ptr: int, free: Callable[[int], None]) -> None:
        self.ptr = ptr
        self._free = free

    @property
    def closed(self) -> bool:
        return not self.ptr

    def close(self) -> None:
        if self.ptr:
            self._free(self.ptr)
            self.ptr = 0


class _LibbpfConsumer:
    """What libbpf's ``ring_buffer`` and ``perf_buffer`` consumers share.

    Subclasses name their libbpf functions (``_PREFIX``: ``ring_buffer`` or
    ``perf_buffer``) and what they are called in messages (``_KIND``); a
    callback error is kept in ``_error`` and re-raised once the poll returns.
    """

    _PREFIX = ""
    _KIND = ""

    _map: Any
    _native: _LibbpfHandle | None
    _error: BaseException | None
    events: int

    def _fn(self, name: str) -> Callable[..., int]:
        return getattr(_libbpf.lib(), f"{self._PREFIX}__{name}")

    def _opened(self, ptr: int | None) -> None:
        """Keep the pointer a ``*__new`` call returned (raises if it failed)."""
        ptr = _libbpf.check_ptr(ptr, f"opening {self._KIND} '{self._map.name}'")
        self._native = _LibbpfHandle(ptr, self._fn("free"))
        self._map._adopt_native(self._native)

    def _check(self) -> int:
        if self._native is None or not self._native.ptr:
            raise ClosedError(f"{self._KIND} '{self._map.name}' is closed")
        return self._native.ptr

    def _finish(self, ret: int, verb: str, before: int) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if ret != -errno.EINTR:  # EINTR: a signal; Python runs its handler next
            _libbpf.check(ret, f"{verb} {self._KIND} '{self._map.name}'")
        return self.events - before

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` (-1: forever) and deliver events; returns how many."""
        before = self.events
        return self._finish(self._fn("poll")(self._check(), int(timeout_ms)), "polling", before)

    def consume(self) -> int:
        """Deliver the events already waiting, without blocking; returns how many."""
        before = self.events
        return self._finish(self._fn("consume")(self._check()), "consuming", before)

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        return int(self._fn("epoll_fd")(self._check()))

    def close(self) -> None:
        if self._native is not None:
            self._native.close()


class _LibbpfRing(_LibbpfConsumer):
    """libbpf's ``ring_buffer``: one ctypes callback per record."""

    _PREFIX, _KIND = "ring_buffer", "ring buffer"

    def __init__(self, map_: RingBufMap) -> None:
        self._map = map_
        self._native = None
        self._error: BaseException | None = None
        self._decoder = _Decoder(map_.event_codec, raw=False)
        self._c_cb = _libbpf.RINGBUF_SAMPLE_FN(self._on_sample)
        self._deliver: Callable[[int, int], None] | None = None
        self.events = 0

    def add(self, callback: Callable[..., Any], *, raw: bool = False) -> None:
        self._decoder.set(self._map.event_codec, raw)
        dec = self._decoder
        if _positional_arity(callback) >= 3:
            def deliver(ptr: int, size: int) -> None:
                callback(None, dec(ptr, size), size)
        else:
            def deliver(ptr: int, size: int) -> None:
                callback(dec(ptr, size))
        self._deliver = deliver
        if self._native is None or self._native.closed:
            self._opened(_libbpf.lib().ring_buffer__new(self._map.fd, self._c_cb, None, None))

    def set_codec(self, codec: Codec) -> None:
        self._decoder.set(codec, self._decoder.raw and self._decoder.codec is not None)

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        self.events += 1  # a callback that raises has had its event too
        try:
            self._deliver(data, size)  # type: ignore[misc]
        except BaseException as e:  # noqa: BLE001 - re-raised from poll()
            self._error = e
            return -1  # stops ring_buffer__poll/consume; the record counts as consumed
        return 0


class PerfBuffer(_LibbpfConsumer):
    """A perf event array's per-CPU buffers (libbpf ``perf_buffer``).

    ``lost`` counts the samples the kernel dropped because the buffer was full.
    """

    _PREFIX, _KIND = "perf_buffer", "perf buffer"

    def __init__(self, map_: PerfEventArrayMap, callback: Callable[..., Any], *,
                 lost_cb: Callable[..., Any] | None = None, pages: int = 64,
                 raw: bool = False) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise LccError(f"perf buffer pages must be a power of two, not {pages}")
        self._map = map_
        self._native = None
        self._error: BaseException | None = None
        self._decoder = _Decoder(map_.event_codec, raw)
        self.lost = 0
        self.events = 0
        dec = self._decoder
        if _positional_arity(callback) >= 3:
            def deliver(cpu: int, ptr: int, size: int) -> None:
                callback(cpu, dec(ptr, size), size)
        else:
            def deliver(cpu: int, ptr: int, size: int) -> None:
                callback(dec(ptr, size))
        self._deliver = deliver
        self._lost_cb = lost_cb
        self._lost_arity = _positional_arity(lost_cb) if lost_cb else 0
        self._c_sample = _libbpf.PERF_SAMPLE_FN(self._on_sample)
        self._c_lost = _libbpf.PERF_LOST_FN(self._on_lost)
        self._opened(_libbpf.lib().perf_buffer__new(map_.fd, pages, self._c_sample,
                                                    self._c_lost, None, None))

    def set_codec(self, codec: Codec) -> None:
        self._decoder.set(codec, False)

    def _on_sample(self, _ctx: int, cpu: int, data: int, size: int) -> None:
        if self._error is not None:
            return  # a callback failed: drop the rest of this poll, re-raise after it
        try:
            self._deliver(cpu, data, size)
            self.events += 1
        except BaseException as e:  # noqa: BLE001 - re-raised from poll()
            self._error = e

    def _on_lost(self, _ctx: int, cpu: int, count: int) -> None:
        self.lost += count
        if self._lost_cb is None or self._error is not None:
            return
        try:
            if self._lost_arity >= 2:
                self._lost_cb(cpu, count)
            else:
                self._lost_cb(count)
        except BaseException as e:  # noqa: BLE001
            self._error = e
