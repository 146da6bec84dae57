"""Live BPF maps, one class per map kind, picked from a table by map type.

=============================  ==========================================
module                         classes
=============================  ==========================================
:mod:`lcc.maps.base`           :class:`Map` (any type; the fallback)
:mod:`lcc.maps.keyvalue`       hash, LRU hash, LPM trie, array, per-CPU
:mod:`lcc.maps.queues`         queue and stack maps (push, pop, peek)
:mod:`lcc.maps.stacks`         :class:`StackTraceMap` (ids to frames)
:mod:`lcc.maps.events`         ring buffers and perf event arrays, which
                               open the consumers of :mod:`lcc.buffers`
=============================  ==========================================

:func:`map_for` makes the live map of a loaded object's map, of the class
:data:`MAP_CLASSES` gives its type.  Every class is importable from here
(``from lcc.maps import HashMap``).  The common kinds (key-value and
event maps) are imported with the package: a tool's maps are made between
open and attach, and lcc keeps that part of a tool's start short; queue,
stack and stack-trace maps, which few tools have, when first used.
"""

from __future__ import annotations

from .. import _lazy
from .base import BPF_ANY, BPF_EXIST, BPF_NOEXIST, Map
from .events import EventMap, PerfEventArrayMap, RingBufMap
from .keyvalue import (ArrayMap, HashMap, KeyValueMap, LpmTrieMap, LruHashMap, LruPerCpuHashMap,
                       PerCpuArrayMap, PerCpuHashMap, PerCpuMixin)
from .keyvalue import _sum_values  # noqa: F401 - lcc.maps._sum_values, as before the split

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..object import BpfObject
    from .queues import QueueMap, StackMap
    from .stacks import StackTraceMap

# enum bpf_map_type
HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY, PERCPU_HASH, PERCPU_ARRAY = 1, 2, 3, 4, 5, 6
STACK_TRACE, CGROUP_ARRAY, LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE = 7, 8, 9, 10, 11
QUEUE, STACK, RINGBUF = 22, 23, 27

# The kinds few tools have: map type -> (module, class), imported on first use.
_LATER = {STACK_TRACE: ("stacks", "StackTraceMap"), QUEUE: ("queues", "QueueMap"),
          STACK: ("queues", "StackMap")}


class _ClassTable(dict):
    """map type -> class; the kinds in ``_LATER`` are imported when first looked up."""

    def __missing__(self, map_type: int) -> type[Map]:
        if map_type not in _LATER:
            raise KeyError(map_type)
        cls = __getattr__(_LATER[map_type][1])
        self[map_type] = cls
        return cls

    def __contains__(self, map_type: object) -> bool:
        return super().__contains__(map_type) or map_type in _LATER

    def get(self, map_type: int, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[map_type]
        except KeyError:
            return default


MAP_CLASSES: dict[int, type[Map]] = _ClassTable({
    HASH: HashMap,
    ARRAY: ArrayMap,
    PERF_EVENT_ARRAY: PerfEventArrayMap,
    PERCPU_HASH: PerCpuHashMap,
    PERCPU_ARRAY: PerCpuArrayMap,
    LRU_HASH: LruHashMap,
    LRU_PERCPU_HASH: LruPerCpuHashMap,
    LPM_TRIE: LpmTrieMap,
    RINGBUF: RingBufMap,
})

__all__ = [
    "BPF_ANY", "BPF_EXIST", "BPF_NOEXIST", "MAP_CLASSES", "Map", "map_for",
    "ArrayMap", "EventMap", "HashMap", "KeyValueMap", "LpmTrieMap", "LruHashMap",
    "LruPerCpuHashMap", "PerCpuArrayMap", "PerCpuHashMap", "PerCpuMixin",
    "PerfEventArrayMap", "QueueMap", "RingBufMap", "StackMap", "StackTraceMap",
]


def map_for(obj: "BpfObject", name: str, *,
            on_buffer: Callable[[Any], None] | None = None) -> Map:
    """The live map object for ``name``, of the class its type calls for.

    ``on_buffer`` is given to event maps (see :attr:`EventMap.on_buffer`).
    """
    spec = obj.map_spec(name)
    cls = MAP_CLASSES.get(spec.type, Map)
    if cls is ArrayMap and spec.internal:
        cls = Map  # .bss/.data/.rodata: use the globals views instead
    m = cls(obj, spec)
    if on_buffer is not None and isinstance(m, EventMap):
        m.on_buffer = on_buffer
    return m


__getattr__ = _lazy.exports(globals(), {cls: module for module, cls in _LATER.values()})
