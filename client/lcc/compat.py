"""pyLCC's and BCC's spellings of ClbcBase's methods, gathered in two mixins.

pyLCC scripts call ``attachKprobe``, ``attachUprobe``, ``getMap``,
``attachPerfEvent``, ``waitInterrupt`` and the like; lcc's own names are
``attach_kprobe``, ``attach_uprobe``, ``attach_perf_event``...  Each method
here only forwards to lcc's (translating pyLCC's arguments: a perf event
attribute dict, a ``"binary:function"`` string, a pid whose threads are
probed one by one), so the two can never drift apart, and ``ClbcBase``
itself holds one spelling of everything.  The ``pylcc`` package
(``from pylcc.lbcBase import ClbcBase, CeventThread``) is built on these.
:class:`BccNames` holds what BCC users reach for: ``bpf_printk()`` output
through ``trace_print()``/``trace_fields()``.
"""

from __future__ import annotations

import os

from .errors import AttachPointMissing, ClosedError, LccError
from .maps import EventMap

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .links import Link, LinkGroup

# Keys of pyLCC's perf event dict that are not attach_perf_event keywords of
# the same name: the event type is event_type, and lcc sets the struct size
# itself (pyLCC's PERF_ATTR_SIZE_VER* were not the kernel's).
_PERF_DICT_ARGS = {"type": "event_type"}
_PERF_DICT_IGNORED = frozenset({"size"})


def perf_attr_from_dict(attr: Mapping[str, Any]) -> dict[str, int]:
    """pyLCC's perf event dict (``{"type": ..., "config": ..., "sample_freq": ...,
    "freq": 1, "bp_addr": ...}``, values as ints or numeric strings) as the
    keyword arguments of :func:`lcc.links.attach_perf_event`."""
    out: dict[str, int] = {}
    for key, value in attr.items():
        if key in _PERF_DICT_IGNORED:
            continue
        try:
            number = int(value, 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ValueError(f"perf event attribute {key!r}: {value!r} is not a number") from None
        out[_PERF_DICT_ARGS.get(key, key)] = number
    if "event_type" not in out:
        raise ValueError("perf event attributes need a 'type' (a PerfType value)")
    return out


def task_ids(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (``/proc/<pid>/task``); raises
    AttachPointMissing when the process does not exist."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise AttachPointMissing("process", str(pid), f"process {pid} does not exist") from None


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

    def attachUprobes(self, function: str, pid: int, binaryPath: str,  # noqa: N802,N803
                      offset: int = 0) -> list[Link]:
        """pyLCC: a uprobe on each thread of ``pid`` (every process when pid <= 0)."""
        return self._per_task(pid, lambda tid: self.attach_uprobe(
            function, binaryPath, offset=offset, pid=tid))

    def attachUretprobes(self, function: str, pid: int, binaryPath: str,  # noqa: N802,N803
                         offset: int = 0) -> list[Link]:
        return self._per_task(pid, lambda tid: self.attach_uretprobe(
            function, binaryPath, offset=offset, pid=tid))

    def traceUprobes(self, function: str, pid: int, fxpr: str) -> list[Link]:  # noqa: N802
        """pyLCC: a uprobe on ``"binary:function"`` (lcc resolves the function's offset)."""
        binary, symbol = _split_fxpr(fxpr)
        return self._per_task(pid, lambda tid: self.attach_uprobe(
            function, binary, symbol, pid=tid))

    def traceUretprobes(self, function: str, pid: int, fxpr: str) -> list[Link]:  # noqa: N802
        binary, symbol = _split_fxpr(fxpr)
        return self._per_task(pid, lambda tid: self.attach_uretprobe(
            function, binary, symbol, pid=tid))

    @staticmethod
    def _per_task(pid: int, attach: Callable[[int], Link]) -> list[Link]:
        # pyLCC attaches per thread of a process (perf events follow one task).
        if pid > 0:
            return [attach(tid) for tid in task_ids(pid)]
        return [attach(-1)]

    def attachPerfEvent(self, function: str, attrD: Mapping[str, Any],  # noqa: N802,N803
                        pid: int = 0, cpu: int = -1, group_fd: int = -1,
                        flags: int = 0) -> LinkGroup:
        """pyLCC: one perf event from its attribute dict (pid 0: this process;
        cpu -1: any CPU), the program attached to it."""
        return self.attach_perf_event(function, pid=pid, cpus=[cpu], group_fd=group_fd,
                                      flags=flags, **perf_attr_from_dict(attrD))

    def attachAllCpuPerf(self, function: str, attrD: Mapping[str, Any],  # noqa: N802,N803
                         pid: int = -1, group_fd: int = -1, flags: int = 0) -> LinkGroup:
        """pyLCC: the perf event on every online CPU."""
        return self.attach_perf_event(function, pid=pid, cpus=None, group_fd=group_fd,
                                      flags=flags, **perf_attr_from_dict(attrD))

    def attachPerfEvents(self, function: str, attrD: Mapping[str, Any],  # noqa: N802,N803
                         pid: int, group_fd: int = -1, flags: int = 0) -> list[LinkGroup]:
        """pyLCC: the perf event on each thread of process ``pid``, on any CPU."""
        kw = perf_attr_from_dict(attrD)
        return [self.attach_perf_event(function, pid=tid, cpus=[-1], group_fd=group_fd,
                                       flags=flags, **kw) for tid in task_ids(pid)]

    def waitInterrupt(self, cb: Callable[[], Any] | None = None) -> None:  # noqa: N802
        """pyLCC: block until SIGINT or SIGTERM, then call ``cb()`` and return.

        Buffers polled by their own threads (``CeventThread``) go on
        delivering meanwhile.  The signals only set a flag while waiting
        (:mod:`lcc.loop`), so nothing is cut short; the main thread must call
        it (only it receives signals).
        """
        from . import loop
        with loop.stopping() as stop:
            stop.run(None, tick=0.1)
        if cb is not None:
            cb()

    def getMap(self, name: str, data: Any, size: int) -> Any:  # noqa: N802
        m = self.maps[name]
        if not isinstance(m, EventMap):
            raise LccError(f"map '{name}' is not a ring buffer or perf event array")
        return m.event(data)


def _split_fxpr(fxpr: str) -> tuple[str, str]:
    binary, sep, symbol = fxpr.partition(":")  # as pyLCC splits it
    if not sep or not binary or not symbol:
        raise LccError(f"expected 'binary:function', not {fxpr!r}")
    return binary, symbol


class BccNames:
    """BCC's names for reading ``bpf_printk()`` output (``<tracefs>/trace_pipe``)."""

    def _trace_pipe(self) -> Any:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} '{self.name}' is closed")
        if self._owned.trace_pipe is None:
            from .tracepipe import TracePipe
            self._owned.trace_pipe = TracePipe()
        return self._owned.trace_pipe

    def trace_readline(self, timeout: float | None = None) -> str | None:
        """The next line of ``<tracefs>/trace_pipe``, waiting up to ``timeout``
        seconds (None: for ever); None when none came.  The pipe is
        system-wide and reading consumes: filter on your pid or a marker.
        Raises :class:`~lcc.errors.NotSupported` without tracefs."""
        return self._trace_pipe().readline(timeout)

    def trace_fields(self, timeout: float | None = None) -> Any:
        """BCC's ``trace_fields()``: the next trace_pipe event as a
        :class:`lcc.tracepipe.TraceLine` ``(task, pid, cpu, flags, ts, msg)``
        (text, not bytes), skipping lines that are not events; None when
        nothing came within ``timeout`` seconds (None: wait for ever)."""
        import time

        from .tracepipe import parse
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            line = self.trace_readline(left)
            if line is None:
                return None
            fields = parse(line)
            if fields is not None:
                return fields

    def trace_print(self, fmt: str | None = None, *, file: Any = None) -> None:
        """BCC's ``trace_print()``: print trace_pipe lines until Ctrl-C (which
        ends it quietly).  ``fmt`` formats each event with ``str.format``,
        positionally as in BCC (``"{1} {5}"``: pid and message) or by name
        (``"{pid} {msg}"``); without it the raw line is printed."""
        import sys
        out = file if file is not None else sys.stdout
        try:
            while True:
                if fmt is None:
                    line = self.trace_readline()
                else:
                    f = self.trace_fields()
                    line = fmt.format(*f, **f._asdict())
                print(line, file=out, flush=True)
        except KeyboardInterrupt:
            return


#: The port of pyLCC's compile service, which a bare host name means.
PYLCC_SERVER_PORT = 7655


def service_url(server: str | None) -> str | None:
    """A compile service as lcc's backends take it: a URL stays as it is; pyLCC's
    bare ``host`` means ``http://host:7655`` and ``host:port`` ``http://host:port``;
    None or ``""`` means no explicit service."""
    if not server:
        return None
    if "://" in server:
        return server
    host = server.rstrip("/")
    after_ipv6 = host.rpartition("]")[2]  # "[::1]:99" -> ":99"; a name is left whole
    if ":" in after_ipv6:
        return f"http://{host}"
    return f"http://{host}:{PYLCC_SERVER_PORT}"
