"""pyLCC's spellings of ClbcBase's methods, gathered in one mixin.

pyLCC scripts call ``attachKprobe``, ``attachUprobe``, ``getMap`` and the
like; lcc's own names are ``attach_kprobe``, ``attach_uprobe``...  Each
method here only forwards to lcc's, so the two can never drift apart, and
``ClbcBase`` itself holds one spelling of everything.
"""

from __future__ import annotations

from .errors import LccError
from .maps import EventMap

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from .links import Link


class PyLccNames:
    """pyLCC's method names on :class:`lcc.ClbcBase` (forwarders, nothing more)."""

    # The attach_* methods and maps are ClbcBase's.

    def attachKprobe(self, function: str, symbol: str) -> Link:  # noqa: N802
        return self.attach_kprobe(function, symbol)

    def attachKretprobe(self, function: str, symbol: str) -> Link:  # noqa: N802
        return self.attach_kretprobe(function, symbol)

    def attachUprobe(self, function: str, pid: int, binaryPath: str,  # noqa: N802,N803
                     offset: int = 0) -> Link:
        return self.attach_uprobe(function, binaryPath, offset=offset, pid=pid)

    def attachUretprobe(self, function: str, pid: int, binaryPath: str,  # noqa: N802,N803
                        offset: int = 0) -> Link:
        return self.attach_uretprobe(function, binaryPath, offset=offset, pid=pid)

    def attachTracepoint(self, function: str, category: str, name: str) -> Link:  # noqa: N802
        return self.attach_tracepoint(function, category, name)

    def attachRawTracepoint(self, function: str, name: str) -> Link:  # noqa: N802
        return self.attach_raw_tracepoint(function, name)

    def attachCgroup(self, function: str, fd: int) -> Link:  # noqa: N802
        return self.attach_cgroup(function, fd)

    def attachXdp(self, function: str, ifindex: int) -> Link:  # noqa: N802
        return self.attach_xdp(function, ifindex)

    def getMap(self, name: str, data: Any, size: int) -> Any:  # noqa: N802
        m = self.maps[name]
        if not isinstance(m, EventMap):
            raise LccError(f"map '{name}' is not a ring buffer or perf event array")
        return m.event(data)
