"""pyLCC's ``ClbcBase`` and ``CeventThread`` on lcc.

``ClbcBase`` is :class:`lcc.ClbcBase` itself: it takes pyLCC's constructor
arguments (``bpf, bpf_str, server, arch, ver, env, attach, workPath``) and
has pyLCC's method names (:class:`lcc.compat.PyLccNames`: ``attachKprobe``,
``attachPerfEvent``, ``traceUprobes``, ``waitInterrupt``, ``getMap``...).

``CeventThread(lbc, "e_out", cb)`` opens the event map's buffer (perf event
array or ring buffer) at once and polls it from a daemon thread, calling
``cb(cpu, event)`` (pyLCC's shape) or ``cb(cpu, event, size)`` for each
event.  An exception raised by ``cb`` is printed and polling goes on.  The
thread ends when the tool is closed (``close()``, its finalizer at exit).

Importing this module makes an uncaught :class:`lcc.LccError` print as one
line (``script.py: <what failed> (<hint>)``) instead of a traceback, as
lcc's command line does; ``LCC_TRACEBACK=1`` keeps the traceback.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import traceback

from lcc import ClbcBase
from lcc.errors import ClosedError, LccError
from lcc.maps import PerfEventArrayMap, RingBufMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CeventThread", "ClbcBase", "ClbcLoad", "getCwd"]

#: pyLCC split loading from ClbcBase; in lcc they are one class.
ClbcLoad = ClbcBase


def getCwd(pathStr: str) -> str:  # noqa: N802,N803
    """pyLCC: the directory of ``pathStr`` (e.g. ``getCwd(__file__)``, for ``workPath=``)."""
    return os.path.dirname(os.path.realpath(pathStr))


def _takes_size(cb: Callable[..., Any]) -> bool:
    """Whether ``cb`` takes a third positional argument (``cb(cpu, event, size)``)."""
    try:
        params = inspect.signature(cb).parameters.values()
    except (TypeError, ValueError):
        return False
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n >= 3


_ONE_CALLBACK_AT_A_TIME = threading.Lock()


class CeventThread(threading.Thread):
    """pyLCC's event thread: polls one event map of ``lbc`` and calls ``cb`` per event.

    ``event`` names a perf event array (``LBC_PERF_OUTPUT``) or a ring buffer
    (``LBC_RINGBUF``; ``cpu`` is then -1).  ``cb(cpu, event)``, or
    ``cb(cpu, event, size)`` for a callback with three parameters, gets the
    decoded event (``lbc.getMap(name, event, size)`` returns it unchanged).
    ``lost(cpu, count)`` or ``lost(count)`` is told about perf samples the
    kernel dropped.  The buffer is opened here, before the thread starts, so
    no event made after the constructor returns is missed.  Callbacks of all
    CeventThreads run one at a time, so what two of them print never
    interleaves within a line (``print`` writes the text and the newline
    separately).
    """

    def __init__(self, lbc: ClbcBase, event: str, cb: Callable[..., Any],
                 lost: Callable[..., Any] | None = None) -> None:
        super().__init__(name=f"CeventThread-{event}", daemon=True)
        self._lbc = lbc
        self._event = event
        self._cb = cb
        self.lost = lost
        self._with_size = _takes_size(cb)
        m = lbc.maps[event]
        if isinstance(m, PerfEventArrayMap):
            self.buffer = m.open_perf_buffer(self.cb, lost_cb=lost)
        elif isinstance(m, RingBufMap):
            self.buffer = m.open_ring_buffer(lambda _ctx, e, size: self.cb(-1, e, size))
        else:
            raise LccError(f"map '{event}' is neither a perf event array nor a ring buffer: "
                           "CeventThread polls event maps (LBC_PERF_OUTPUT, LBC_RINGBUF)")
        self.start()

    def cb(self, cpu: int, data: Any, size: int) -> None:
        """Hand one event to the user's callback; print what it raises and go on."""
        try:
            with _ONE_CALLBACK_AT_A_TIME:
                if self._with_size:
                    self._cb(cpu, data, size)
                else:
                    self._cb(cpu, data)
        except Exception:  # noqa: BLE001 - pyLCC's threads outlive a failing callback
            print(f"CeventThread '{self._event}': the callback raised:", file=sys.stderr)
            traceback.print_exc()

    def run(self) -> None:
        buf = self.buffer
        while not buf.closed:
            try:
                buf.poll(1000)
            except ClosedError:
                break  # the tool was closed while we polled
            except Exception:  # noqa: BLE001 - a thread has nobody to raise to
                print(f"CeventThread '{self._event}': polling failed; the thread ends:",
                      file=sys.stderr)
                traceback.print_exc()
                break


def _one_line_errors(previous: Callable[..., Any]) -> Callable[..., Any]:
    def excepthook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, LccError) and os.environ.get("LCC_TRACEBACK") != "1":
            prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "pylcc"
            print(f"{prog}: {value}", file=sys.stderr)
            return
        previous(etype, value, tb)

    excepthook.pylcc = True  # type: ignore[attr-defined]
    return excepthook


if not getattr(sys.excepthook, "pylcc", False):
    sys.excepthook = _one_line_errors(sys.excepthook)
