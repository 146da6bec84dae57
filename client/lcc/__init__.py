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
        "ClosedError", "CompileError", "CompileServiceError", "Diagnostic", "KeyNotFound",
        "LccError", "NotSupported", "ProgramLoadError", "ToolchainMissing")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lcc' has no attribute {name!r}")
    # __import__ rather than importlib.import_module: importing importlib
    # costs a tool's start more than this whole module.
    value = getattr(__import__(module, globals(), None, [name], 1), name)
    globals()[name] = value  # next time without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
