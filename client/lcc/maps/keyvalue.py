"""Key-value maps: hash, LRU hash, LPM trie, array and their per-CPU forms.

They are :class:`collections.abc.MutableMapping` objects whose keys and
values are decoded through the object's BTF (see :mod:`lcc.btf`): ``m[k]``,
``m[k] = v``, ``del m[k]``, ``len(m)``, ``m.items()``...  Per-CPU maps
return a list with one value per possible CPU and offer
:meth:`PerCpuMixin.sum`.

The pyLCC names (``get()`` with no argument, ``getKeys``, ``getKeyValue``,
``getThenClear``; on arrays ``get(size)`` and ``showHist``) are kept so
that pyLCC tools run unchanged.
"""

from __future__ import annotations

import collections.abc
import errno

from .. import _libbpf
from ..codecs import Codec
from ..errors import BpfError, KeyNotFound, NotSupported
from .base import _MISSING, BPF_ANY, Map, _codec_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterator

    from ..hist import LinearHist, Log2Hist
    from ..object import BpfObject, MapSpec


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

    # -- histograms: keys are slots (bucket indexes), values counts -----------

    def _slot_counts(self) -> dict[int, int]:
        """``{slot: count}`` of the map's non-zero elements (per-CPU counts added up).

        Raises TypeError when a key or a count is not an integer (a struct key
        holds more than a slot: build the histograms with
        :meth:`lcc.hist.Log2Hist.grouped` instead)."""
        out: dict[int, int] = {}
        for k, v in self.items():
            if isinstance(v, list):  # one count per CPU
                v = sum(v)
            if not isinstance(k, int) or not isinstance(v, int):
                raise TypeError(
                    f"map '{self.name}' is not a slot -> count map (key {k!r}, value {v!r}); "
                    "build the histogram with lcc.hist.Log2Hist.grouped() instead")
            if v:
                out[k] = out.get(k, 0) + v
        return out

    def log2_hist(self) -> Log2Hist:
        """The map's counts as a :class:`lcc.hist.Log2Hist` (keys are log2 slots,
        as ``lbc_hist_slot()`` computes them)."""
        from ..hist import Log2Hist
        return Log2Hist.from_slots(self._slot_counts())

    def linear_hist(self, *, base: int = 0, step: int = 1) -> LinearHist:
        """The map's counts as a :class:`lcc.hist.LinearHist`; key *i* counts the
        values in ``[base + i*step, base + (i+1)*step)``."""
        from ..hist import LinearHist
        return LinearHist.from_slots(self._slot_counts(), base=base, step=step)

    def print_log2_hist(self, val_type: str = "value", *,
                        strip_leading_zero: bool = False) -> None:
        """BCC's name: print :meth:`log2_hist` rendered as BCC draws it (header
        ``val_type``); prints nothing when every count is zero."""
        text = self.log2_hist().render(val_type, strip_leading_zero=strip_leading_zero)
        if text:
            print(text)

    def print_linear_hist(self, val_type: str = "value", step: int = 1, *, base: int = 0,
                          strip_leading_zero: bool = False) -> None:
        """BCC's name: print :meth:`linear_hist` rendered as BCC draws it (rows
        labelled ``base + i*step``); prints nothing when every count is zero."""
        text = self.linear_hist(base=base, step=step).render(
            val_type, strip_leading_zero=strip_leading_zero)
        if text:
            print(text)

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

    def get(self, size: Any = _MISSING, default: Any = _MISSING) -> Any:  # type: ignore[override]
        """pyLCC's ``get(size)``: the first ``size`` values as a list (every value
        without ``size``).  With two arguments it is the Mapping form,
        ``get(index, default)``; ``m[i]`` reads one element."""
        if default is not _MISSING:
            return super().get(size, default)
        n = self.max_entries if size is _MISSING else max(0, min(int(size), self.max_entries))
        return [self[i] for i in range(n)]

    def hist_base(self) -> int:
        """2 for a log2 histogram (``LBC_HIST2``, and arrays not marked otherwise),
        10 for a log10 one (``LBC_HIST10``)."""
        return self._obj.btf.map_uint_field(self.name, "lbc_hist") or 2

    def showHist(self, head: str = "dummy", array: list[int] | None = None) -> None:  # noqa: N802
        """pyLCC: print ``head``, then the histogram of the map's counts (or of
        ``array``) in pyLCC's format, log2 or log10 as the map was declared.

        Raises ValueError, as pyLCC does, when every count is zero.
        """
        from ..hist import render_pylcc
        text = render_pylcc(self.get() if array is None else array, base=self.hist_base())
        print(head)
        print(text)

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
