"""Live BPF maps, one class per map kind, picked from a table by map type.

Key-value maps are :class:`collections.abc.MutableMapping` objects whose
keys and values are decoded through the object's BTF (see :mod:`lcc.btf`):
``m[k]``, ``m[k] = v``, ``del m[k]``, ``len(m)``, ``m.items()``...
Per-CPU maps return a list with one value per possible CPU and offer
:meth:`PerCpuMixin.sum`.  Queue and stack maps push and pop; stack-trace maps
turn a stack id into addresses and symbols; ring-buffer and perf-event-array
maps open the buffers of :mod:`lcc.buffers`.

The pyLCC names (``get()`` with no argument, ``getKeys``, ``getKeyValue``,
``getThenClear``, ``getStacks``, ``event``) are kept so that pyLCC tools run
unchanged.
"""

from __future__ import annotations

import collections.abc
import errno

from . import _libbpf
from .btf import BtfType
from .buffers import PerfBuffer, RingBuffer
from .codecs import Codec, codec, raw_codec
from .errors import BpfError, KeyNotFound, LccError, NotSupported

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

    from .object import BpfObject, MapSpec

# enum bpf_map_type
HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY, PERCPU_HASH, PERCPU_ARRAY = 1, 2, 3, 4, 5, 6
STACK_TRACE, CGROUP_ARRAY, LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE = 7, 8, 9, 10, 11
QUEUE, STACK, RINGBUF = 22, 23, 27

_MISSING = object()
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


class Map:
    """A map of any type: name, fd, type and sizes (the fallback for unknown types)."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        self._obj = obj
        self.spec = spec
        self.name = spec.name
        self._fd = obj.map_fd(spec.name)

    @property
    def fd(self) -> int:
        self._obj._check_open()
        return self._fd

    @property
    def map_type(self) -> int:
        return self.spec.type

    @property
    def type_name(self) -> str:
        return self.spec.type_name

    @property
    def key_size(self) -> int:
        return self.spec.key_size

    @property
    def value_size(self) -> int:
        return self.spec.value_size

    @property
    def max_entries(self) -> int:
        return self.spec.max_entries

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} type={self.type_name} "
                f"key={self.key_size} value={self.value_size} max={self.max_entries}>")


def _codec_for(t: BtfType | None, size: int) -> Codec:
    if t is None or size == 0:
        return raw_codec(size)
    c = codec(t)
    return c if c.size == size else raw_codec(size)


class KeyValueMap(Map, collections.abc.MutableMapping):
    """A map with keys and values: hash, LRU hash, array and their relatives."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        self.key_codec = _codec_for(spec.key_type, spec.key_size)
        self.value_codec = _codec_for(spec.value_type, spec.value_size)
        self._batch_ok = True

    # -- encoding -------------------------------------------------------------

    def _key(self, key: Any) -> bytes:
        if isinstance(key, (bytes, bytearray)) and len(key) == self.key_size \
                and self.key_codec.cls is None:
            return bytes(key)
        try:
            return self.key_codec.encode(key)
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise TypeError(f"map '{self.name}': cannot use {key!r} as a key of type "
                            f"{self.spec.key_type}: {e}") from None

    def _value(self, value: Any) -> bytes:
        try:
            return self.value_codec.encode(value)
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise TypeError(f"map '{self.name}': cannot store {value!r} as "
                            f"{self.spec.value_type}: {e}") from None

    def _decode_value(self, raw: bytes | bytearray) -> Any:
        return self.value_codec.decode(raw, 0)

    def _value_buffer_size(self) -> int:
        return self.value_size

    # -- MutableMapping --------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        raw = _libbpf.map_lookup(self.fd, self._key(key), self._value_buffer_size())
        if raw is None:
            raise KeyNotFound(key, self.name)
        return self._decode_value(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def update(self, key: Any = _MISSING, value: Any = _MISSING, flags: int = BPF_ANY,
               **kw: Any) -> None:
        """``m.update(key, value, flags)`` writes one element (BPF_ANY/NOEXIST/EXIST);
        ``m.update(mapping)`` writes many, as dict.update does."""
        if value is _MISSING:
            if key is not _MISSING:
                items = key.items() if hasattr(key, "items") else key
                for k, v in items:
                    self.update(k, v)
            for k, v in kw.items():
                self.update(k, v)
            return
        try:
            _libbpf.map_update(self.fd, self._key(key), self._value(value), flags)
        except BpfError as e:
            raise self._update_error(e, key) from None

    def _update_error(self, e: BpfError, key: Any) -> BpfError:
        if e.errno == errno.ENOENT:  # BPF_EXIST and the key is absent
            return KeyNotFound(key, self.name)
        if e.errno == errno.EEXIST:  # BPF_NOEXIST and the key is present
            return BpfError(e.errno, f"update of map '{self.name}'",
                            message=f"key {key!r} already exists in map '{self.name}'")
        if e.errno == errno.E2BIG:
            return BpfError(e.errno, f"update of map '{self.name}'",
                            message=f"map '{self.name}' is full ({self.max_entries} entries)",
                            hint=f"give it more room before load: "
                                 f"map_sizes={{{self.name!r}: n}}")
        return e

    def __delitem__(self, key: Any) -> None:
        if not _libbpf.map_delete(self.fd, self._key(key)):
            raise KeyNotFound(key, self.name)

    def _raw_keys(self) -> Iterator[bytes]:
        fd, ks = self.fd, self.key_size
        k = _libbpf.map_next_key(fd, None, ks)
        while k is not None:
            yield k
            k = _libbpf.map_next_key(fd, k, ks)

    def __iter__(self) -> Iterator[Any]:
        dec = self.key_codec.decode
        for k in self._raw_keys():
            yield dec(k, 0)

    def __len__(self) -> int:
        return sum(1 for _ in self._raw_keys())

    def __contains__(self, key: object) -> bool:
        try:
            raw = _libbpf.map_lookup(self.fd, self._key(key), self._value_buffer_size())
        except TypeError:
            return False
        return raw is not None

    def items_raw(self) -> Iterator[tuple[bytes, bytes]]:
        """(key bytes, value bytes) of every element, by batch lookup where the kernel has it."""
        if self._batch_ok:
            batches = self._batch_items()
            try:
                first = next(batches, None)
            except NotSupported:
                self._batch_ok = False  # decided on the first call: nothing was yielded yet
            else:
                if first is not None:
                    yield first
                    yield from batches
                return
        fd, vs = self.fd, self._value_buffer_size()
        for k in self._raw_keys():
            v = _libbpf.map_lookup(fd, k, vs)
            if v is not None:  # deleted while we walked
                yield k, bytes(v)

    def _batch_items(self) -> Iterator[tuple[bytes, bytes]]:
        ks, vs = self.key_size, self._value_buffer_size()
        count = max(1, min(self.max_entries, 4096))
        token = None
        while True:
            keys, vals, n, token = _libbpf.map_lookup_batch(self.fd, ks, vs, count, token)
            for i in range(n):
                yield keys[i * ks:(i + 1) * ks], vals[i * vs:(i + 1) * vs]
            if token is None:
                return

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        kd, vd = self.key_codec.decode, self._decode_value
        return [(kd(k, 0), vd(v)) for k, v in self.items_raw()]

    def values(self) -> list[Any]:  # type: ignore[override]
        vd = self._decode_value
        return [vd(v) for _, v in self.items_raw()]

    def keys(self) -> list[Any]:  # type: ignore[override]
        return list(iter(self))

    def clear(self) -> None:
        keys = list(self._raw_keys())
        for k in keys:
            _libbpf.map_delete(self.fd, k)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        try:
            v = self[key]
        except KeyNotFound:
            if default is _MISSING:
                raise
            return default
        _libbpf.map_delete(self.fd, self._key(key))
        return v

    def get(self, key: Any = _MISSING, default: Any = None) -> Any:  # type: ignore[override]
        """``m.get(key, default)`` as on a dict; ``m.get()`` (pyLCC) returns the whole map."""
        if key is _MISSING:
            return dict(self.items())
        try:
            return self[key]
        except KeyNotFound:
            return default

    def to_dict(self) -> dict[Any, Any]:
        return dict(self.items())

    # pyLCC names
    def getKeys(self) -> list[Any]:  # noqa: N802
        return self.keys()

    def getKeyValue(self, key: Any) -> Any:  # noqa: N802
        return self.get(key)

    def getThenClear(self) -> dict[Any, Any]:  # noqa: N802
        """Read every element and delete it (lookup-and-delete per key)."""
        out = {}
        for k in list(self._raw_keys()):
            v = _libbpf.map_lookup(self.fd, k, self._value_buffer_size())
            if v is not None:
                _libbpf.map_delete(self.fd, k)
                out[self.key_codec.decode(k, 0)] = self._decode_value(v)
        return out


class HashMap(KeyValueMap):
    """BPF_MAP_TYPE_HASH."""


class LruHashMap(HashMap):
    """BPF_MAP_TYPE_LRU_HASH: the kernel evicts old elements when it is full."""


class LpmTrieMap(KeyValueMap):
    """BPF_MAP_TYPE_LPM_TRIE: keys are ``{prefixlen, data}``; lookups match the longest prefix.

    The kernel has no batch lookup for tries: iteration walks get_next_key.
    """


class ArrayMap(KeyValueMap):
    """BPF_MAP_TYPE_ARRAY: keys are 0..max_entries-1 and always present."""

    def _update_error(self, e: BpfError, key: Any) -> BpfError:
        if e.errno == errno.E2BIG:  # the kernel's answer to an index past the end
            return KeyNotFound(key, self.name, err=e.errno, message=(
                f"index {key!r} is out of range for array map '{self.name}' "
                f"(0..{self.max_entries - 1})"))
        return super()._update_error(e, key)

    def __delitem__(self, key: Any) -> None:
        raise TypeError(f"map '{self.name}' is an array: elements cannot be deleted "
                        "(assign zero instead, or clear() to zero them all)")

    def __len__(self) -> int:
        return self.max_entries

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.max_entries))

    def clear(self) -> None:
        """Set every element to zero."""
        zero = bytes(self.value_size)
        for i in range(self.max_entries):
            _libbpf.map_update(self.fd, self._key(i), self._zero_value(zero))

    def _zero_value(self, zero: bytes) -> bytes:
        return zero


class PerCpuMixin:
    """Values of per-CPU maps: a list with one value per possible CPU."""

    value_size: int
    value_codec: Codec

    def _init_percpu(self) -> None:
        self.ncpus = _libbpf.num_possible_cpus()
        self._stride = (self.value_size + 7) // 8 * 8

    def _value_buffer_size(self) -> int:
        return self._stride * self.ncpus

    def _decode_value(self, raw: bytes | bytearray) -> list[Any]:
        dec, st = self.value_codec.decode, self._stride
        return [dec(raw, i * st) for i in range(self.ncpus)]

    def _value(self, value: Any) -> bytes:
        """A list gives each CPU its value; anything else is written to every CPU."""
        if isinstance(value, list):
            if len(value) != self.ncpus:
                raise ValueError(f"per-CPU value needs {self.ncpus} items, got {len(value)}")
            values = value
        else:
            values = [value] * self.ncpus
        out = bytearray(self._stride * self.ncpus)
        for i, v in enumerate(values):
            self.value_codec.encode_into(out, i * self._stride, v)
        return bytes(out)

    def _zero_value(self, zero: bytes) -> bytes:
        return bytes(self._stride * self.ncpus)

    def sum(self, key: Any) -> Any:
        """The per-CPU values of ``key`` added up (integers, or structs field by field)."""
        return _sum_values(self[key])  # type: ignore[index]

    def sums(self) -> dict[Any, Any]:
        """Every key with its per-CPU values added up."""
        return {k: _sum_values(v) for k, v in self.items()}  # type: ignore[attr-defined]


def _sum_values(values: list[Any]) -> Any:
    if not values:
        return 0
    first = values[0]
    if isinstance(first, (int, float)):
        return sum(values)
    if hasattr(first, "_fields"):
        return {f: _sum_values([getattr(v, f) for v in values]) for f in first._fields}
    if isinstance(first, tuple):
        return tuple(_sum_values(list(col)) for col in zip(*values))
    # Not a number (a name, say): every CPU holds a copy; keep the first one set.
    return next((v for v in values if v), first)


class PerCpuHashMap(PerCpuMixin, HashMap):
    """BPF_MAP_TYPE_PERCPU_HASH."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        self._init_percpu()


class LruPerCpuHashMap(PerCpuHashMap):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH."""


class PerCpuArrayMap(PerCpuMixin, ArrayMap):
    """BPF_MAP_TYPE_PERCPU_ARRAY."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        self._init_percpu()


class QueueMap(Map):
    """BPF_MAP_TYPE_QUEUE (FIFO) and, as :class:`StackMap`, BPF_MAP_TYPE_STACK (LIFO)."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        self.value_codec = _codec_for(spec.value_type, spec.value_size)

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        """Add a value; with BPF_EXIST a full map drops its oldest element."""
        _libbpf.map_update(self.fd, None, self.value_codec.encode(value), flags)

    def pop(self) -> Any:
        """Remove and return the next value; raises KeyNotFound when empty."""
        raw = _libbpf.map_lookup_and_delete(self.fd, None, self.value_size)
        if raw is None:
            raise KeyNotFound(None, self.name, message=f"map '{self.name}' is empty")
        return self.value_codec.decode(raw, 0)

    def peek(self) -> Any:
        """The next value without removing it; raises KeyNotFound when empty."""
        raw = _libbpf.map_lookup(self.fd, None, self.value_size)  # type: ignore[arg-type]
        if raw is None:
            raise KeyNotFound(None, self.name, message=f"map '{self.name}' is empty")
        return self.value_codec.decode(raw, 0)

    def drain(self) -> list[Any]:
        """Pop until empty."""
        out = []
        while True:
            raw = _libbpf.map_lookup_and_delete(self.fd, None, self.value_size)
            if raw is None:
                return out
            out.append(self.value_codec.decode(raw, 0))


class StackMap(QueueMap):
    """BPF_MAP_TYPE_STACK: pop returns the newest value."""


class StackTraceMap(Map):
    """BPF_MAP_TYPE_STACK_TRACE: stack id -> instruction pointers."""

    def stack(self, stack_id: int) -> list[int]:
        """The addresses of a stack, innermost first; raises KeyNotFound for a stale id."""
        if stack_id < 0:
            raise KeyNotFound(stack_id, self.name)
        raw = _libbpf.map_lookup(self.fd, int(stack_id).to_bytes(4, "little"), self.value_size)
        if raw is None:
            raise KeyNotFound(stack_id, self.name)
        addrs = memoryview(bytes(raw)).cast("Q").tolist()
        n = next((i for i, a in enumerate(addrs) if a == 0), len(addrs))
        return addrs[:n]

    def symbolize(self, stack_id: int) -> list[str]:
        """Kernel frames of a stack as ``func+0xoff`` (from /proc/kallsyms)."""
        from .symbols import kernel_symbols
        return kernel_symbols().symbolize(self.stack(stack_id))

    def __delitem__(self, stack_id: int) -> None:
        if not _libbpf.map_delete(self.fd, int(stack_id).to_bytes(4, "little")):
            raise KeyNotFound(stack_id, self.name)

    def getStacks(self, stack_id: int, sLen: int = -1) -> list[str]:  # noqa: N802,N803
        frames = self.symbolize(stack_id)
        return frames if sLen < 0 else frames[:sLen]


class EventMap(Map):
    """Base of maps that carry events to user space (ring buffer, perf event array).

    ``event_type`` is the BTF type of the events: the ``lbc_event`` member of
    the map definition (``LBC_RINGBUF``/``LBC_PERF_OUTPUT``), or what
    :meth:`set_event_type` named.  :meth:`event` decodes raw bytes with it.
    """

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        # The event type and its codec are read from BTF when first asked for
        # (usually by the first event), not here: that is a good part of a
        # tool's start, and some tools never decode events.
        self._event_known = False
        self._event_type: BtfType | None = None
        self._event_codec: Codec | None = None
        self._buffer: "RingBuffer | PerfBuffer | None" = None

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
        """Decode events as ``type_name`` (``"struct data_t"``), from the object's BTF."""
        t = self._obj.btf.named_type(type_name) if isinstance(type_name, str) else type_name
        self._event_type, self._event_codec = t, codec(t)
        self._event_known = True
        if self._buffer is not None:
            self._buffer.set_codec(self._event_codec)

    @property
    def event_codec(self) -> Codec | None:
        self._declared_event()
        return self._event_codec

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
        if len(data) < c.size:
            data = bytes(data).ljust(c.size, b"\0")
        return c.decode(data, 0)

    def _adopt_native(self, native: Any) -> None:
        """Have the object close a buffer's native part (libbpf consumer or
        mappings) before itself, also when a tool is closed or collected."""
        self._obj.adopt_buffer(native)


class RingBufMap(EventMap):
    """BPF_MAP_TYPE_RINGBUF."""

    def open_ring_buffer(self, callback: Callable[..., Any], *, raw: bool = False) -> "RingBuffer":
        """Start delivering events to ``callback``.

        ``callback(event)`` gets the decoded event; a callback that takes three
        arguments is called BCC-style as ``callback(ctx, event, size)``.  With
        ``raw=True`` it gets bytes instead.  Returns the :class:`RingBuffer`.
        """
        if self._buffer is None:
            self._buffer = RingBuffer(self)
        self._buffer.add(callback, raw=raw)
        return self._buffer  # type: ignore[return-value]

    def ring_buffer_poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` for events and deliver them; returns how many."""
        return self._require_buffer().poll(timeout_ms)

    def ring_buffer_consume(self) -> int:
        """Deliver the events already waiting, without blocking."""
        return self._require_buffer().consume()

    def _require_buffer(self):
        if self._buffer is None:
            raise LccError(f"call open_ring_buffer() on map '{self.name}' first")
        return self._buffer


class PerfEventArrayMap(EventMap):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY."""

    def open_perf_buffer(self, callback: Callable[..., Any],
                         lost_cb: Callable[[int], Any] | None = None,
                         page_cnt: int | None = None, *, pages: int | None = None,
                         raw: bool = False) -> "PerfBuffer":
        """Start delivering events to ``callback``.

        ``callback(cpu, event, size)`` as in pyLCC and BCC (``event`` is the
        decoded event; ``ctypes.string_at(event, size)`` and
        ``map.event(...)`` still work on it), or ``callback(event)``.
        ``lost_cb(count)`` is told about samples the kernel dropped; they are
        also counted in :attr:`PerfBuffer.lost`.  ``pages`` per CPU defaults
        to the map's ``LBC_PERF_OUTPUT`` page count, else 64.
        """
        if self._buffer is not None:
            raise LccError(f"map '{self.name}' already has an open perf buffer")
        n = pages or page_cnt or self._obj.btf.map_uint_field(self.name, "lbc_pages") or 64
        self._buffer = PerfBuffer(self, callback, lost_cb=lost_cb, pages=n, raw=raw)
        return self._buffer  # type: ignore[return-value]

    def perf_buffer_poll(self, timeout_ms: int | None = None) -> int:
        """Poll the perf buffer.

        With a timeout (BCC style), wait at most ``timeout_ms`` once and return
        the number of events delivered.  Without one (pyLCC style), keep
        polling until a callback raises or KeyboardInterrupt.
        """
        buf = self._require_buffer()
        if timeout_ms is not None:
            return buf.poll(timeout_ms)
        total = 0
        while True:
            total += buf.poll(1000)

    def perf_buffer_consume(self) -> int:
        return self._require_buffer().consume()

    def _require_buffer(self):
        if self._buffer is None:
            raise LccError(f"call open_perf_buffer() on map '{self.name}' first")
        return self._buffer


MAP_CLASSES: dict[int, type[Map]] = {
    HASH: HashMap,
    ARRAY: ArrayMap,
    PERF_EVENT_ARRAY: PerfEventArrayMap,
    PERCPU_HASH: PerCpuHashMap,
    PERCPU_ARRAY: PerCpuArrayMap,
    STACK_TRACE: StackTraceMap,
    LRU_HASH: LruHashMap,
    LRU_PERCPU_HASH: LruPerCpuHashMap,
    LPM_TRIE: LpmTrieMap,
    QUEUE: QueueMap,
    STACK: StackMap,
    RINGBUF: RingBufMap,
}


def map_for(obj: "BpfObject", name: str) -> Map:
    """The live map object for ``name``, of the class its type calls for."""
    spec = obj.map_spec(name)
    cls = MAP_CLASSES.get(spec.type, Map)
    if cls is ArrayMap and spec.internal:
        cls = Map  # .bss/.data/.rodata: use the globals views instead
    return cls(obj, spec)
