"""lcc: BPF tools as short Python scripts, compiled once with CO-RE, loaded through libbpf.

The public surface::

    from lcc import ClbcBase, Fallback

    class Hello(ClbcBase):
        def __init__(self):
            super().__init__("hello")     # hello.bpf.c beside this file

Everything else is reached from there: ``self.maps[...]`` (map kinds in
lcc.maps), ring and perf buffers (lcc.buffers), ``self.rodata``/``self.bss``
globals, explicit ``attach_*`` calls (lcc.links), the object's spec and live
object (lcc.spec, lcc.object), compiling (lcc.compile) and the errors in
lcc.errors.  Each name below is imported on first use (PEP 562), so
``import lcc`` costs next to nothing and a tool pays only for what it uses.
"""

from __future__ import annotations

from . import _lazy

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "ClbcBase": "base", "Fallback": "base",
    "ObjectSpec": "spec", "ProgramSpec": "spec",
    "BpfObject": "object", "Program": "object", "MapSpec": "object",
    "GlobalSection": "globalvars",
    "Map": "maps", "HashMap": "maps", "LruHashMap": "maps", "ArrayMap": "maps",
    "LpmTrieMap": "maps", "PerCpuHashMap": "maps", "LruPerCpuHashMap": "maps",
    "PerCpuArrayMap": "maps", "QueueMap": "maps", "StackMap": "maps",
    "StackTraceMap": "maps", "RingBufMap": "maps", "PerfEventArrayMap": "maps",
    "RingBuffer": "buffers", "PerfBuffer": "buffers",
    "Link": "links", "LinkGroup": "links",
    "Artifact": "compile", "build": "compile",
    **{name: "errors" for name in (
        "AttachPointMissing", "BpfError", "BpfPermissionError", "BtfError", "CacheError",
        "ClosedError", "CompileError", "CompileServiceError", "CompileWarning", "Diagnostic",
        "KeyNotFound", "LccError", "NotSupported", "ProgramLoadError", "ToolchainMissing")},
}

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:  # noqa: F401 - what type checkers see; at run time __getattr__ imports
    from .base import ClbcBase, Fallback
    from .buffers import PerfBuffer, RingBuffer
    from .compile import Artifact, build
    from .errors import (AttachPointMissing, BpfError, BpfPermissionError, BtfError, CacheError,
        ClosedError, CompileError, CompileServiceError, CompileWarning, Diagnostic, KeyNotFound,
        LccError, NotSupported, ProgramLoadError, ToolchainMissing)
    from .globalvars import GlobalSection
    from .links import Link, LinkGroup
    from .maps import (ArrayMap, HashMap, LpmTrieMap, LruHashMap, LruPerCpuHashMap, Map,
        PerCpuArrayMap, PerCpuHashMap, PerfEventArrayMap, QueueMap, RingBufMap, StackMap,
        StackTraceMap)
    from .object import BpfObject, MapSpec, Program
    from .spec import ObjectSpec, ProgramSpec

__all__ = sorted(_EXPORTS)


__getattr__ = _lazy.exports(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
