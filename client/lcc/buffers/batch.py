"""EventBatch: events taken from a ring buffer at once, decoded into columns.

:meth:`lcc.buffers.RingBuffer.read_batch` copies the committed records of a
ring out of the map in runs (one copy per run of equal-length records) and
decodes them here, all at once:

* with numpy (the ``numpy`` extra) and an event type made of integers,
  floats, ``char`` arrays and arrays of those: each column is a numpy array
  viewed straight from the copied records through a structured dtype, with
  no Python object per event (tens of millions of events a second);
* otherwise: the events are built as a callback would get them (one
  ``struct.iter_unpack`` per run) and transposed, each column a tuple.
  That is the per-event decoding plus a transposition and every event kept,
  so it is slower than a callback (``bench/tools_bench.py --rows decode``:
  about half its rate): a convenience for code that wants columns; the
  bulk speed is numpy's.

Either way ``batch["pid"]`` is every event's ``pid``, in the order the
kernel committed them; ``len(batch)`` counts them and iterating gives the
events as rows.  ``char`` arrays are ``str`` in tuples and ``bytes`` (``S``
dtype, NUL-padded) in numpy arrays.
"""

from __future__ import annotations

import gc

from ..btf import Array, Enum, Float, Int, Struct
from ..codecs import _is_char_like
from ..ringbuf_mmap import HDR_SIZE, EventDelivery, record_size

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ..codecs import Codec

class EventBatch:
    """Decoded events as columns: ``batch[name]``, ``batch.columns``, ``len(batch)``.

    ``fields`` names the columns (the event struct's members; ``("data",)``
    for undecoded events, whose column holds each record's bytes).
    ``numpy`` says whether the columns are numpy arrays.
    """

    __slots__ = ("fields", "columns", "count", "numpy")

    def __init__(self, fields: tuple[str, ...], columns: dict[str, Any], count: int,
                 numpy: bool = False) -> None:
        self.fields, self.columns, self.count, self.numpy = fields, columns, count, numpy

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, name: str) -> Any:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r} (the columns: {', '.join(self.fields)})") \
                from None

    def __iter__(self) -> Iterator[tuple]:
        """The events as rows (tuples in ``fields`` order)."""
        return zip(*(self.columns[f] for f in self.fields))

    def __repr__(self) -> str:
        return f"<EventBatch {self.count} events: {', '.join(self.fields)}>"


def empty(codec: Codec | None, raw: bool = False) -> EventBatch:
    fields = _fields(codec, raw)
    return EventBatch(fields, {f: () for f in fields}, 0)


def _fields(codec: Codec | None, raw: bool) -> tuple[str, ...]:
    cls = None if raw or codec is None else codec.cls
    return tuple(cls._fields) if cls is not None else ("data",)


def from_events(events: list[Any], codec: Codec | None, raw: bool = False) -> EventBatch:
    """A batch from events already decoded one by one (libbpf's consumer)."""
    fields = _fields(codec, raw)
    if not events:
        return empty(codec, raw)
    if fields == ("data",):
        return EventBatch(fields, {"data": tuple(events)}, len(events))
    return EventBatch(fields, dict(zip(fields, zip(*events))), len(events))


def decode_runs(runs: list[tuple[bytes | bytearray, int, int]], codec: Codec | None, *, raw: bool = False,
                use_numpy: bool | None = None) -> EventBatch:
    """Decode ``runs`` of ring records into one :class:`EventBatch`.

    Each run is ``(bytes, records, record length)``: the records' bytes as
    they sat in the ring (headers included), as :class:`RingReader.drain`
    hands them on.
    ``use_numpy``: None uses numpy when it is installed and the event type
    suits it (every record at least the event's size), True requires it
    (ImportError without it), False never uses it.
    """
    if not runs:
        return empty(codec, raw)
    if not raw and codec is not None and use_numpy is not False:
        dt = _numpy_plan(codec, use_numpy)
        if dt is not None and all(length >= codec.size for _, _, length in runs):
            return _decode_numpy(runs, codec, dt)
    events: list[Any] = []
    d = EventDelivery(events.append, codec, raw=raw)
    # Millions of new tuples would set the cyclic collector off again and
    # again, each pass over all of them; none of them can be in a cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for data, n, length in runs:
            _, err = d(memoryview(data), n, length)
            if err is not None:  # a codec error: raised as the per-event path raises it
                raise err
        return from_events(events, codec, raw)
    finally:
        if collecting:
            gc.enable()


# -- numpy ---------------------------------------------------------------------------

_np: Any = None


def _numpy(required: bool | None) -> Any:
    global _np
    if _np is None:
        try:
            import numpy  # the `numpy` extra; only read_batch uses it
        except ImportError:
            if required:
                raise ImportError("read_batch(use_numpy=True) needs numpy: "
                                  "pip install 'lcc[numpy]'") from None
            _np = False
        else:
            _np = numpy
    return _np or None


def _dtype_of(t: Any) -> Any:
    """A numpy dtype spec for a BTF type, or None when it has no flat equivalent."""
    r = t.resolve()
    if isinstance(r, Int) and not r.is_bool and r.nbytes in (1, 2, 4, 8):
        return f"<{'i' if r.signed else 'u'}{r.nbytes}"
    if isinstance(r, Enum) and r.nbytes in (1, 2, 4, 8):
        return f"<{'i' if r.signed else 'u'}{r.nbytes}"
    if isinstance(r, Float) and r.nbytes in (4, 8):
        return f"<f{r.nbytes}"
    if isinstance(r, Array) and r.nelems > 0:
        e = r.elem.resolve()
        if _is_char_like(e):  # what the codec reads as str
            return f"S{r.nelems}"
        sub = _dtype_of(e)
        return (sub, (r.nelems,)) if isinstance(sub, str) else None
    return None


def _numpy_plan(codec: Codec, required: bool | None) -> Any:
    """The structured dtype of one event (without its ring header), or None."""
    np = _numpy(required)
    if np is None:
        return None
    cache = _plans.get(id(codec))
    if cache is not None and cache[0] is codec:
        return cache[1]
    t = codec.type.resolve()
    dt = None
    if isinstance(t, Struct) and not t.is_union and \
            not any(m.bitfield_size or m.bit_offset % 8 or not m.name for m in t.members):
        specs = [_dtype_of(m.type) for m in t.members]
        if all(s is not None for s in specs):
            dt = np.dtype({"names": [m.name for m in t.members], "formats": specs,
                           "offsets": [m.bit_offset // 8 for m in t.members],
                           "itemsize": codec.size})
    if dt is None and required:
        raise TypeError(f"{codec.type} has members numpy cannot view (unions, bitfields, "
                        "pointers to nested structs): use_numpy=False decodes it")
    _plans[id(codec)] = (codec, dt)
    return dt


_plans: dict[int, tuple[Any, Any]] = {}


def _decode_numpy(runs: list[tuple[bytes | bytearray, int, int]], codec: Codec, dt: Any) -> EventBatch:
    np = _np
    parts = []
    i = 0
    while i < len(runs):
        # Consecutive runs of one record length: one buffer, one view.
        j = i + 1
        while j < len(runs) and runs[j][2] == runs[i][2]:
            j += 1
        # (read_batch hands them on merged already)
        data = runs[i][0] if j == i + 1 else b"".join(r[0] for r in runs[i:j])
        n = sum(r[1] for r in runs[i:j])
        # The records' bodies seen in place: one every record_size bytes, after the header.
        parts.append(np.ndarray((n,), dtype=dt, buffer=data, offset=HDR_SIZE,
                                strides=(record_size(runs[i][2]),)))
        i = j
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
    fields = tuple(dt.names)
    return EventBatch(fields, {f: arr[f] for f in fields}, len(arr), numpy=True)
