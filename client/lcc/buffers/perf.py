"""PerfBuffer: a perf event array's per-CPU buffers, through libbpf's ``perf_buffer``."""

from __future__ import annotations

from .. import _libbpf
from ..errors import LccError
from ._consumer import _Decoder, _LibbpfConsumer, _positional_arity

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..codecs import Codec
    from ._consumer import CodecSource


class PerfBuffer(_LibbpfConsumer):
    """A perf event array's per-CPU buffers (libbpf ``perf_buffer``).

    ``fd`` and ``name`` are the perf event array map's; ``callback`` gets
    each event as ``callback(cpu, event, size)`` (pyLCC, BCC) or
    ``callback(event)``; ``codec`` decodes the events (or is a function
    that returns the codec when the first event comes; None or
    ``raw=True``: bytes); ``adopt`` takes the native ``perf_buffer`` so that
    its owner frees it; ``pages`` per CPU is a power of two.  ``lost_cb``
    (``lost_cb(count)`` or ``lost_cb(cpu, count)``) is told about samples
    the kernel dropped because the buffer was full; :attr:`lost` counts
    them and :attr:`delivered` the events delivered.

    One thread may poll it while another closes it (or the tool's
    finalizer does, at exit): the close wakes the poll, which returns, and
    libbpf's buffer is freed only once no thread is inside libbpf with it.
    """

    _PREFIX, _KIND = "perf_buffer", "perf buffer"
    kind = "perf"

    def __init__(self, fd: int, name: str, callback: Callable[..., Any], *,
                 codec: CodecSource, adopt: Callable[[Any], None],
                 lost_cb: Callable[..., Any] | None = None, pages: int = 64,
                 raw: bool = False) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise LccError(f"perf buffer pages must be a power of two, not {pages}")
        self.name = name
        self.callback = callback
        self._adopt = adopt
        self._native = None
        self._error: BaseException | None = None
        self._decoder = _Decoder(codec, raw)
        self.lost = 0
        self.delivered = 0
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
        self._opened(_libbpf.lib().perf_buffer__new(fd, pages, self._c_sample,
                                                    self._c_lost, None, None))

    @property
    def events(self) -> int:
        """The same as :attr:`delivered` (its earlier name)."""
        return self.delivered

    def set_codec(self, codec: Codec | None) -> None:
        """Decode events with ``codec`` from now on (``set_event_type`` on the map)."""
        self._decoder.set_codec(codec)

    def _on_sample(self, _ctx: int, cpu: int, data: int, size: int) -> None:
        if self._error is not None:
            return  # a callback failed: drop the rest of this poll, re-raise after it
        try:
            self._deliver(cpu, data, size)
            self.delivered += 1
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
