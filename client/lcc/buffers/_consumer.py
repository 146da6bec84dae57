"""What lcc's consumers share: callback shapes, sample decoding and libbpf's consumers.

libbpf's ``ring_buffer`` and ``perf_buffer`` call back into Python once per
sample through ctypes; :class:`_LibbpfConsumer` is their common part (the
native handle the owner closes, poll/consume, errors) and :class:`_Decoder`
turns a sample's pointer into the value the callback gets.  The native
handle (:class:`_LibbpfHandle`) is never freed while a thread is inside
libbpf with it, whichever thread closes it.
"""

from __future__ import annotations

import _thread  # threading's locks, without importing threading (start-up cost)
import errno
import os
import select

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

#: Seconds close() waits for a thread that is inside a poll or consume (in a
#: callback, say) to leave, before leaving the free to that thread.
CLOSE_WAIT = 5.0
_read = _libbpf.read_memory  # ctypes.string_at


def _positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (bound methods exclude self); 99 for *args."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    bound = hasattr(fn, "__self__")
    if code is None and not isinstance(fn, type):
        # An object whose class defines __call__ in Python (a tool's printer):
        # its method's code, self excluded, without importing inspect at start.
        call = getattr(fn, "__call__", None)
        code = getattr(getattr(call, "__func__", call), "__code__", None)
        bound = hasattr(call, "__self__")
    if code is not None and not isinstance(fn, type):  # functions, lambdas, methods
        if code.co_flags & 0x04:  # CO_VARARGS
            return 99
        return code.co_argcount - (1 if bound else 0)
    import inspect  # other callables (partials, builtins, classes)
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
    """A libbpf ``ring_buffer`` or ``perf_buffer``: its pointer, the function
    that frees it, and what keeps it from being freed while it is in use.

    The native part of a consumer, kept apart from the Python callbacks (and
    the ctypes trampolines into them) so that the BPF object, and through it
    a tool's finalizer, can free it without keeping any callback alive.
    libbpf's ``*__free`` functions never call back into Python.

    libbpf's ``*__consume`` runs without the GIL and reads the buffer's
    memory, so freeing the buffer from another thread meanwhile (``close()``,
    or a tool's finalizer at exit while a polling thread runs) would crash
    the process.  Every use is therefore bracketed by :meth:`enter` and
    :meth:`leave`, and :meth:`close` frees the buffer only once no thread
    is inside: at once if none is; else it wakes the threads that wait for
    events (:meth:`wait`), lets the last one out free it, and waits up to
    :data:`CLOSE_WAIT` seconds for that.  A close from inside a callback
    (the polling thread itself) leaves the free to the end of that poll.
    Calls into libbpf are serialised (:meth:`call`): libbpf's consumers are
    not meant to be consumed by two threads at once.
    """

    __slots__ = ("ptr", "_free", "_epoll_fd", "_lock", "_call_lock", "_users", "_threads",
                 "_closing", "_idle", "_waiter", "_wake")

    def __init__(self, ptr: int, free: Callable[[int], None],
                 epoll_fd: Callable[[int], int] | None = None) -> None:
        self.ptr = ptr
        self._free = free
        self._epoll_fd = epoll_fd
        self._lock = _thread.allocate_lock()
        self._call_lock = _thread.RLock()
        self._users = 0
        self._threads: dict[int, int] = {}  # thread id -> how many times it is inside
        self._closing = False
        self._idle: Any = None  # the lock close() waits on while threads are inside
        self._waiter: select.epoll | None = None  # the buffer's epoll fd and _wake
        self._wake = -1  # an eventfd, written once by close() to end every wait

    @property
    def closed(self) -> bool:
        return self._closing or not self.ptr

    def enter(self) -> int:
        """Start a use: the pointer, or 0 if the buffer is closed (or closing)."""
        with self._lock:
            if self._closing or not self.ptr:
                return 0
            self._users += 1
            me = _thread.get_ident()
            self._threads[me] = self._threads.get(me, 0) + 1
            return self.ptr

    def leave(self) -> None:
        """End a use begun by :meth:`enter`; the last one out after close() frees."""
        with self._lock:
            self._users -= 1
            me = _thread.get_ident()
            left = self._threads.pop(me, 1) - 1
            if left:
                self._threads[me] = left
            ptr = 0
            if self._closing and self._users == 0:
                ptr, self.ptr = self.ptr, 0
            idle = self._idle if ptr else None
        if ptr:
            self._release(ptr)
            if idle is not None:
                idle.release()

    def call(self, fn: Callable[[int], int]) -> int:
        """``fn(ptr)``, one thread at a time (inside :meth:`enter`/:meth:`leave`)."""
        with self._call_lock:
            return fn(self.ptr)

    def wait(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` (-1: forever) for events, inside
        :meth:`enter`/:meth:`leave`; False on timeout or when the buffer closes."""
        with self._lock:
            if self._closing:
                return False
            waiter = self._waiter
            if waiter is None:
                # Our own epoll set over libbpf's epoll fd and an eventfd that
                # close() writes, so that a close ends the wait at once.
                waiter = select.epoll(2)
                try:
                    waiter.register(self._epoll_fd(self.ptr), select.EPOLLIN)  # type: ignore[misc]
                    self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                    waiter.register(self._wake, select.EPOLLIN)
                except BaseException:
                    waiter.close()
                    if self._wake >= 0:
                        os.close(self._wake)
                        self._wake = -1
                    raise
                self._waiter = waiter
        ready = waiter.poll(timeout_ms / 1000 if timeout_ms > 0 else timeout_ms, 2)
        return bool(ready) and not self._closing

    def close(self) -> None:
        """Free the buffer now, or as soon as no thread uses it (see the class). Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._wake >= 0:
                os.eventfd_write(self._wake, 1)
            ptr = idle = None
            if self._users == 0:
                ptr, self.ptr = self.ptr, 0
            elif not self._threads.get(_thread.get_ident()):
                idle = self._idle = _thread.allocate_lock()
                idle.acquire()
        if ptr:
            self._release(ptr)
        elif idle is not None:
            # The last thread out frees it; a callback that blocks longer
            # than this leaves the free to its thread.
            idle.acquire(True, CLOSE_WAIT)

    def _release(self, ptr: int) -> None:
        self._free(ptr)
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1


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
        self._native = _LibbpfHandle(ptr, self._fn("free"), self._fn("epoll_fd"))
        self._adopt(self._native)

    @property
    def closed(self) -> bool:
        return self._native is None or self._native.closed

    def _check(self) -> int:
        if self._native is None or self._native.closed:
            raise ClosedError(f"{self._KIND} '{self.name}' is closed")
        return self._native.ptr

    def _enter(self) -> _LibbpfHandle:
        h = self._native
        if h is None or not h.enter():
            raise ClosedError(f"{self._KIND} '{self.name}' is closed")
        return h

    def _finish(self, ret: int, verb: str, before: int) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if ret != -errno.EINTR:  # EINTR: a signal; Python runs its handler next
            _libbpf.check(ret, f"{verb} {self._KIND} '{self.name}'")
        return self.delivered - before

    def poll(self, timeout_ms: int = -1) -> int:
        """Deliver waiting events, else wait up to ``timeout_ms`` (-1: forever) and
        deliver those that come; returns how many.

        A close (from any thread) ends the wait: this call then returns what
        it delivered, and the next one raises ClosedError.
        """
        h = self._enter()
        before = self.delivered
        consume = self._fn("consume")
        try:
            # What waits is taken first: a wait alone could miss events whose
            # wakeup another poller of the same fd has already taken.
            ret = h.call(consume)
            if ret >= 0 and self._error is None and self.delivered == before \
                    and timeout_ms != 0 and (h.wait(int(timeout_ms)) or not h.closed):
                # Also when the wait ran out: a ring buffer's producer may submit
                # without a wakeup (BPF_RB_NO_WAKEUP), and its events wait for this.
                ret = h.call(consume)
        finally:
            h.leave()
        return self._finish(ret, "polling", before)

    def consume(self) -> int:
        """Deliver the events already waiting, without blocking; returns how many."""
        h = self._enter()
        before = self.delivered
        try:
            ret = h.call(self._fn("consume"))
        finally:
            h.leave()
        return self._finish(ret, "consuming", before)

    def fileno(self) -> int:
        """An epoll fd that is readable when events wait."""
        return int(self._fn("epoll_fd")(self._check()))

    def close(self) -> None:
        """Stop consuming; the native buffer is freed once no thread uses it. Idempotent."""
        if self._native is not None:
            self._native.close()
