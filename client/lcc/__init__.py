"""lcc: BPF tools as short Python scripts, compiled once with CO-RE, loaded through libbpf.

The public surface::

    from lcc import ClbcBase, Fallback

    class Hello(ClbcBase):
        def __init__(self):
            super().__init__("hello")     # hello.bpf.c beside this file

Everything else is reached from there: ``self.maps[...]`` (lcc.maps),
ring and perf buffers (lcc.buffers), ``self.rodata``/``self.bss`` globals,
explicit ``attach_*`` calls (lcc.links) and the errors in lcc.errors.
"""

from .base import ClbcBase, Fallback
from .errors import (AttachPointMissing, BpfError, BpfPermissionError, BtfError, CacheError,
                     ClosedError, CompileError, CompileServiceError, KeyNotFound, LccError,
                     NotSupported, ProgramLoadError, ToolchainMissing)

__version__ = "0.1.0"

__all__ = [
    "AttachPointMissing",
    "BpfError",
    "BpfPermissionError",
    "BtfError",
    "CacheError",
    "ClbcBase",
    "ClosedError",
    "CompileError",
    "CompileServiceError",
    "Fallback",
    "KeyNotFound",
    "LccError",
    "NotSupported",
    "ProgramLoadError",
    "ToolchainMissing",
]
