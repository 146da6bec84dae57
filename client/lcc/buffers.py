"""Ring buffers and perf buffers: events from BPF programs to Python callbacks.

A buffer owns its libbpf consumer and the ctypes callbacks that feed it,
decodes each event with the map's BTF event type, and calls the user's
callback.  An exception raised by the user's callback stops the poll and is
re-raised from :meth:`poll`/:meth:`consume`; nothing is swallowed.  Each
buffer exposes :meth:`fileno` (an epoll fd that becomes readable when events
wait) for ``selectors`` or asyncio.
"""

from __future__ import annotations

import errno
import inspect
from typing import TYPE_CHECKING, Any, Callable

from . import _libbpf
from .btf import Codec
from .errors import ClosedError, LccError

if TYPE_CHECKING:
    from .maps import PerfEventArrayMap, RingBufMap


def _positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (bound methods exclude self); 99 for *args."""
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


class RingBuffer:
    """A BPF ring buffer map's consumer (libbpf ``ring_buffer``)."""

    def __init__(self, map_: "RingBufMap") -> None:
        self._map = map_
        self._ptr = 0
        self._error: BaseException | None = None
        self._handlers: list[Callable[[int, int], int]] = []
        self._decoder = _Decoder(map_.event_codec, raw=False)
        self._c_cb = _libbpf.RINGBUF_SAMPLE_FN(self._on_sample)
        self._deliver: Callable[[int, int], None] | None = None
        self.events = 0

    def add(self, callback: Callable[..., Any], *, raw: bool = False) -> None:
        """Set the callback (one per ring buffer; a second call replaces it)."""
        self._decoder.set(self._map.event_codec, raw)
        dec = self._decoder
        if _positional_arity(callback) >= 3:
            def deliver(ptr: int, size: int) -> None:
                callback(None, dec(ptr, size), size)
        else:
            def deliver(ptr: int, size: int) -> None:
                callback(dec(ptr, size))
        self._deliver = deliver
        if not self._ptr:
            ct_ptr = _libbpf.lib().ring_buffer__new(self._map.fd, self._c_cb, None, None)
            self._ptr = _libbpf.check_ptr(ct_ptr, f"opening ring buffer '{self._map.name}'")

    def set_codec(self, codec: Codec) -> None:
        self._decoder.set(codec, self._decoder.raw and self._decoder.codec is not None)

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        try:
            self._deliver(data, size)  # type: ignore[misc]
        except BaseException as e:  # noqa: BLE001 - re-raised from poll()
            self._error = e
            return -1  # stops ring_buffer__poll/consume
        self.events += 1
        return 0

    def _check(self) -> int:
        if not self._ptr:
            raise ClosedError(f"ring buffer '{self._map.name}' is closed")
        return self._ptr

    def _finish(self, ret: int, what: str) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if ret == -errno.EINTR:
            return 0
        return _libbpf.check(ret, what)

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` (-1: forever) and deliver waiting events; returns how many."""
        ret = _libbpf.lib().ring_buffer__poll(self._check(), int(timeout_ms))
        return self._finish(ret, f"polling ring buffer '{self._map.name}'")

    def consume(self) -> int:
        """Deliver the events already waiting, without blocking; returns how many."""
        ret = _libbpf.lib().ring_buffer__consume(self._check())
        return self._finish(ret, f"consuming ring buffer '{self._map.name}'")

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        return int(_libbpf.lib().ring_buffer__epoll_fd(self._check()))

    def close(self) -> None:
        if self._ptr:
            _libbpf.lib().ring_buffer__free(self._ptr)
            self._ptr = 0


class PerfBuffer:
    """A perf event array's per-CPU buffers (libbpf ``perf_buffer``).

    ``lost`` counts the samples the kernel dropped because the buffer was full.
    """

    def __init__(self, map_: "PerfEventArrayMap", callback: Callable[..., Any], *,
                 lost_cb: Callable[..., Any] | None = None, pages: int = 64,
                 raw: bool = False) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise LccError(f"perf buffer pages must be a power of two, not {pages}")
        self._map = map_
        self._ptr = 0
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
        ptr = _libbpf.lib().perf_buffer__new(map_.fd, pages, self._c_sample, self._c_lost,
                                             None, None)
        self._ptr = _libbpf.check_ptr(ptr, f"opening perf buffer '{map_.name}'")

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

    def _check(self) -> int:
        if not self._ptr:
            raise ClosedError(f"perf buffer '{self._map.name}' is closed")
        return self._ptr

    def _finish(self, ret: int, what: str, before: int) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if ret == -errno.EINTR:
            return self.events - before
        _libbpf.check(ret, what)
        return self.events - before

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` and deliver events; returns how many were delivered."""
        before = self.events
        ret = _libbpf.lib().perf_buffer__poll(self._check(), int(timeout_ms))
        return self._finish(ret, f"polling perf buffer '{self._map.name}'", before)

    def consume(self) -> int:
        before = self.events
        ret = _libbpf.lib().perf_buffer__consume(self._check())
        return self._finish(ret, f"consuming perf buffer '{self._map.name}'", before)

    def fileno(self) -> int:
        return int(_libbpf.lib().perf_buffer__epoll_fd(self._check()))

    def close(self) -> None:
        if self._ptr:
            _libbpf.lib().perf_buffer__free(self._ptr)
            self._ptr = 0
