"""What lcc's consumers share: callback shapes, sample decoding and libbpf's consumers.

libbpf's ``ring_buffer`` and ``perf_buffer`` call back into Python once per
sample through ctypes; :class:`_LibbpfConsumer` is their common part (the
native handle the owner closes, poll/consume, errors) and :class:`_Decoder`
turns a sample's pointer into the value the callback gets.
"""

from __future__ import annotations

import errno

from .. import _libbpf
from ..errors import ClosedError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Union

    from ..codecs import Codec

    # The event codec, or a function that returns it when the first event comes
    # (reading the event type from BTF is a good part of a tool's start).
    CodecSource = Union[Codec, None, Callable[[], Union[Codec, None]]]

_UNSET: Any = object()
_read = _libbpf.read_memory  # ctypes.string_at


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


def codec_getter(codec: CodecSource) -> Callable[[], Codec | None]:
    """A buffer's ``codec`` argument as a function (a codec given as such returns itself)."""
    if codec is None or hasattr(codec, "decode_record"):
        return lambda: codec  # type: ignore[return-value]
    return codec  # type: ignore[return-value]


class _Decoder:
    """Turns a (pointer, size) sample into what the callback wants.

    The record's bytes when ``raw`` (or when there is no event type), else
    the event, zero-filled if short (:meth:`Codec.decode_record`).  The
    codec is asked for at the first sample.
    """

    __slots__ = ("_raw", "_get", "_use")

    def __init__(self, codec: CodecSource, raw: bool = False) -> None:
        self._get = codec_getter(codec)
        self._raw = raw
        self._use: Any = _UNSET  # the codec samples are decoded with; None: bytes

    @property
    def raw(self) -> bool:
        return self._raw

    @raw.setter
    def raw(self, raw: bool) -> None:
        self._raw, self._use = raw, _UNSET

    def set_codec(self, codec: Codec | None) -> None:
        self._get, self._use = codec_getter(codec), _UNSET

    def __call__(self, ptr: int, size: int) -> Any:
        # Once per event: kept to the fewest lookups (see bench/runtime_bench.py).
        c = self._use
        if c is _UNSET:
            c = self._use = None if self._raw else self._get()
        data = _read(ptr, size)
        if c is None:
            return data
        if size >= c.size:
            return c.decode(data, 0)
        return c.decode_record(data)  # a short sample (rare): the pad helper


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
    ``delivered`` counts the events handed on.
    """

    _PREFIX = ""
    _KIND = ""

    name: str
    _adopt: Callable[[Any], None]
    _native: _LibbpfHandle | None
    _error: BaseException | None
    delivered: int

    def _fn(self, name: str) -> Callable[..., int]:
        return getattr(_libbpf.lib(), f"{self._PREFIX}__{name}")

    def _opened(self, ptr: int | None) -> None:
        """Keep the pointer a ``*__new`` call returned (raises if it failed) and
        hand its handle to the owner, who closes it."""
        ptr = _libbpf.check_ptr(ptr, f"opening {self._KIND} '{self.name}'")
        self._native = _LibbpfHandle(ptr, self._fn("free"))
        self._adopt(self._native)

    @property
    def closed(self) -> bool:
        return self._native is None or not self._native.ptr

    def _check(self) -> int:
        if self._native is None or not self._native.ptr:
            raise ClosedError(f"{self._KIND} '{self.name}' is closed")
        return self._native.ptr

    def _finish(self, ret: int, verb: str, before: int) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if ret != -errno.EINTR:  # EINTR: a signal; Python runs its handler next
            _libbpf.check(ret, f"{verb} {self._KIND} '{self.name}'")
        return self.delivered - before

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` (-1: forever) and deliver events; returns how many."""
        before = self.delivered
        return self._finish(self._fn("poll")(self._check(), int(timeout_ms)), "polling", before)

    def consume(self) -> int:
        """Deliver the events already waiting, without blocking; returns how many."""
        before = self.delivered
        return self._finish(self._fn("consume")(self._check()), "consuming", before)

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        return int(self._fn("epoll_fd")(self._check()))

    def close(self) -> None:
        if self._native is not None:
            self._native.close()
