"""pyLCC's map class names, for lcc's map classes.

pyLCC made ``CmapsHash``, ``CmapsArray``... from the map types in its
compiled object; lcc picks its own classes (:data:`lcc.maps.MAP_CLASSES`),
which have pyLCC's methods (``get``, ``getKeys``, ``getKeyValue``,
``getThenClear``, ``clear``; arrays ``get(size)`` and ``showHist``; stacks
``getStacks`` and ``getArr``; event maps ``open_perf_buffer`` and
``perf_buffer_poll``).  The names below let code that checks a map's class
keep working.
"""

from __future__ import annotations

from lcc.maps import (ArrayMap, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArrayMap,
                      PerCpuHashMap, PerfEventArrayMap, RingBufMap, StackTraceMap)

__all__ = ["CmapsArray", "CmapsEvent", "CmapsHash", "CmapsHist10", "CmapsHist2",
           "CmapsLruHash", "CmapsLruPerHash", "CmapsPerArray", "CmapsPerHash",
           "CmapsRingBuf", "CmapsStack", "mapsDict"]

CmapsEvent = PerfEventArrayMap
CmapsRingBuf = RingBufMap
CmapsHash = HashMap
CmapsArray = ArrayMap
CmapsHist2 = ArrayMap  # LBC_HIST2: an array lcc knows as a log2 histogram
CmapsHist10 = ArrayMap  # LBC_HIST10: the same, log10
CmapsLruHash = LruHashMap
CmapsPerHash = PerCpuHashMap
CmapsPerArray = PerCpuArrayMap
CmapsLruPerHash = LruPerCpuHashMap
CmapsStack = StackTraceMap

#: pyLCC's table of map kinds (by its kind names).
mapsDict = {"event": CmapsEvent, "hash": CmapsHash, "array": CmapsArray,
            "hist2": CmapsHist2, "hist10": CmapsHist10, "lruHash": CmapsLruHash,
            "perHash": CmapsPerHash, "perArray": CmapsPerArray,
            "lruPerHash": CmapsLruPerHash, "stack": CmapsStack}
