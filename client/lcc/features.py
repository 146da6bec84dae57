"""What this kernel can do, found by looking and probing, each answer computed once.

Probes answer questions such as "are kprobes configured", "does this
tracepoint exist", "can an fentry program load here", "which program and
map types does the kernel accept"; the runtime uses them to pick a working
alternative before load and to explain attach failures, ``lcc doctor``
prints them, and tests use them to skip by feature name.

Probes have no side effects: they read ``/sys``, ``/proc`` and tracefs and
load (then close) two-instruction programs; they never mount or write
anything.  Without tracefs the answer is "tracefs is not mounted".
:func:`mount_tracefs` is the one function here that changes the system; a
tracepoint attach calls it when it failed and tracefs is missing.

The probes are methods of a :class:`Probes` built over a *host*, the
source of every fact they read (:class:`LocalHost`: this machine).  Each
:class:`Probes` caches its answers; the module functions
(:func:`has_kprobes`, :func:`probe_section`, ...) ask the process-wide one,
:func:`probes`.  Tests build a :class:`Probes` over a fake host instead.
"""

from __future__ import annotations

import functools
import os

from . import _libbpf
from ._record import Record
from .btf import KIND_FUNC, KIND_TYPEDEF, Btf
from .errors import LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, Protocol

    class Host(Protocol):
        """What probes read and load; :class:`LocalHost` is this machine."""

        def exists(self, path: str) -> bool: ...
        def read_lines(self, path: str) -> Iterable[str]: ...       # OSError if unreadable
        def vmlinux_btf(self) -> Btf: ...                          # LccError without BTF
        def load_program(self, prog_type: int, *, expected_attach_type: int = 0,
                         attach_btf_id: int = 0) -> tuple[int, str]: ...  # (errno, log)
        def probe_type(self, what: str, value: int) -> int: ...    # 1 yes, 0 no, <0 error
        def libbpf_version(self) -> tuple[int, int]: ...           # LccError without libbpf
        def privileged(self) -> bool: ...
        def mount(self, fstype: str, target: str) -> bool: ...     # only mount_tracefs calls it

__all__ = ["LocalHost", "ProbeResult", "Probes", "can_load_tp_btf", "can_load_tracing",
           "has_kernel_btf", "has_kprobes", "has_uprobes", "kernel_func_btf_id",
           "kernel_function_exists", "map_types", "mount_tracefs", "probe_section", "probes",
           "prog_types", "raw_tracepoint_exists", "summary", "tracefs_dir", "tracefs_mounted",
           "tracepoint_exists", "using"]

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
TRACEFS_HINT = "mount it: mount -t tracefs tracefs /sys/kernel/tracing"

# enum bpf_prog_type / bpf_attach_type values used by the probes
PROG_TYPE_TRACING = 26
PROG_TYPE_LSM = 29
ATTACH_TRACE_RAW_TP, ATTACH_TRACE_FENTRY, ATTACH_TRACE_FEXIT, ATTACH_LSM_MAC = 23, 24, 25, 27

#: enum bpf_prog_type values :meth:`Probes.prog_types` asks about, with libbpf's names.
PROG_TYPES = {1: "socket_filter", 2: "kprobe", 3: "sched_cls", 5: "tracepoint", 6: "xdp",
              7: "perf_event", 8: "cgroup_skb", 9: "cgroup_sock", 13: "sock_ops",
              17: "raw_tracepoint", 18: "cgroup_sock_addr", 27: "struct_ops", 31: "syscall"}
#: enum bpf_map_type values :meth:`Probes.map_types` asks about.
MAP_TYPES = {1: "hash", 2: "array", 4: "perf_event_array", 5: "percpu_hash",
             6: "percpu_array", 7: "stack_trace", 9: "lru_hash", 27: "ringbuf",
             29: "task_storage"}


class LocalHost:
    """This machine, as the probes see it (the default host)."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read_lines(self, path: str) -> Iterator[str]:
        with open(path) as f:
            yield from f

    def vmlinux_btf(self) -> Btf:
        return Btf.vmlinux()

    def load_program(self, prog_type: int, *, expected_attach_type: int = 0,
                     attach_btf_id: int = 0) -> tuple[int, str]:
        return _libbpf.prog_load_probe(prog_type, expected_attach_type=expected_attach_type,
                                       attach_btf_id=attach_btf_id)

    def probe_type(self, what: str, value: int) -> int:
        fn = getattr(_libbpf.lib(), f"libbpf_probe_bpf_{what}_type")
        return int(fn(value, None))

    def libbpf_version(self) -> tuple[int, int]:
        return _libbpf.version()

    def privileged(self) -> bool:
        return os.geteuid() == 0

    def mount(self, fstype: str, target: str) -> bool:
        import subprocess
        r = subprocess.run(["mount", "-t", fstype, fstype, target], capture_output=True)
        return r.returncode == 0


class ProbeResult(Record):
    """A probe's answer: ``ok``, else ``reason`` says what is missing. True when ok."""

    __slots__ = ("ok", "reason")
    _by_value = True

    def __init__(self, ok: bool, reason: str = "") -> None:
        self._set(ok=ok, reason=reason)

    def __bool__(self) -> bool:
        return self.ok


def _cached(method: Callable) -> Callable:
    """Remember a probe's answer per :class:`Probes` object and arguments."""
    @functools.wraps(method)
    def wrapper(self: "Probes", *args: object) -> object:
        key = (method.__name__, *args)
        try:
            return self._answers[key]
        except KeyError:
            answer = self._answers[key] = method(self, *args)
            return answer
    return wrapper


_TRACING_KINDS = {"fentry": "fentry", "fexit": "fexit", "fentry.s": "fentry",
                  "fexit.s": "fexit", "fmod_ret": "fentry", "lsm": "lsm", "lsm.s": "lsm"}
_KPROBE_KINDS = {"kprobe", "kretprobe", "ksyscall", "kretsyscall", "kprobe.multi",
                 "kretprobe.multi"}


class Probes:
    """Feature probes over one host, each answer computed once.

    Nothing here mounts or writes: a probe that needs tracefs answers as
    if it were absent (``tracepoint_exists`` gives None: "cannot tell")
    when it is not mounted.  :meth:`forget` drops the remembered answers
    (after :func:`mount_tracefs` changed what they depend on).
    """

    def __init__(self, host: Host | None = None) -> None:
        self.host: Host = host if host is not None else LocalHost()
        self._answers: dict[tuple, object] = {}
        # On this machine, the answers that cost a parse of the kernel's BTF
        # or a program load are also remembered per kernel build-id (and
        # load results per boot), so that the next process skips them.
        self._kept: Any = None
        if host is None:
            from . import kernelcache
            self._kept = kernelcache.Answers("probes")

    def forget(self) -> None:
        """Drop every remembered answer."""
        self._answers.clear()

    # -- what is there ---------------------------------------------------------------------

    @_cached
    def tracefs_dir(self) -> str | None:
        """Where tracefs is mounted (one of :data:`TRACEFS_CANDIDATES`), or None."""
        return next((p for p in TRACEFS_CANDIDATES
                     if self.host.exists(os.path.join(p, "events"))), None)

    def tracefs_mounted(self) -> bool:
        return self.tracefs_dir() is not None

    @_cached
    def has_kernel_btf(self) -> bool:
        return self.host.exists("/sys/kernel/btf/vmlinux")

    @_cached
    def has_kprobes(self) -> bool:
        """Whether kprobes are configured (CONFIG_KPROBES): the kprobe PMU or kprobe_events."""
        if self.host.exists("/sys/bus/event_source/devices/kprobe/type"):
            return True
        tracefs = self.tracefs_dir()
        return tracefs is not None and self.host.exists(os.path.join(tracefs, "kprobe_events"))

    @_cached
    def has_uprobes(self) -> bool:
        return self.host.exists("/sys/bus/event_source/devices/uprobe/type")

    @_cached
    def tracepoint_exists(self, category: str, name: str) -> bool | None:
        """Whether tracepoint ``category/name`` exists; None when tracefs is not mounted."""
        tracefs = self.tracefs_dir()
        if tracefs is None:
            return None
        return self.host.exists(os.path.join(tracefs, "events", category, name))

    def _vmlinux_find(self, name: str, kind: int) -> int:
        """BTF id of ``name`` of ``kind`` in the kernel's BTF (0: absent or no BTF)."""
        key = f"btf {kind} {name}"
        if self._kept is not None:
            got = self._kept.get(key)
            if got is not None and got.isdigit():
                return int(got)
        try:
            t = self.host.vmlinux_btf().find(name, kind)
        except LccError:
            return 0
        tid = t.id if t is not None else 0
        if self._kept is not None:
            self._kept.put(key, str(tid))
        return tid

    def _kept_load(self, what: str, probe: Callable[[], ProbeResult]) -> ProbeResult:
        """``probe()``, whose answer (a program load's) is remembered for this boot."""
        from . import kernelcache
        boot = kernelcache.boot_id() if self._kept is not None else None
        if boot is None:  # not this machine, or no boot id: nothing to key it by
            return probe()
        key = f"load {boot} {what}"
        got = self._kept.get(key)
        if got is not None and got[:2] in ("1 ", "0 "):
            return ProbeResult(got[0] == "1", got[2:])
        r = probe()
        self._kept.put(key, f"{int(r.ok)} {r.reason}")
        return r

    @_cached
    def raw_tracepoint_exists(self, name: str) -> bool:
        """raw_tp and tp_btf targets: the kernel's BTF has ``btf_trace_<name>``."""
        return self._vmlinux_find(f"btf_trace_{name}", KIND_TYPEDEF) > 0

    @_cached
    def kernel_func_btf_id(self, name: str) -> int:
        """BTF id of kernel function ``name`` (0 when absent or without BTF)."""
        return self._vmlinux_find(name, KIND_FUNC)

    @_cached
    def _kallsyms_text(self) -> frozenset[str]:
        names = set()
        try:
            for line in self.host.read_lines("/proc/kallsyms"):
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
        except OSError:
            pass
        return frozenset(names)

    def kernel_function_exists(self, name: str) -> bool:
        """Whether ``name`` is a function of the running kernel (kallsyms or BTF)."""
        return name in self._kallsyms_text() or self.kernel_func_btf_id(name) > 0

    # -- what loads ------------------------------------------------------------------------

    @_cached
    def can_load_tracing(self, kind: str, func: str) -> ProbeResult:
        """Whether an fentry/fexit/lsm program on ``func`` loads here (loads a 2-insn probe)."""
        return self._kept_load(f"tracing {kind} {func}",
                               lambda: self._can_load_tracing(kind, func))

    def _can_load_tracing(self, kind: str, func: str) -> ProbeResult:
        btf_id = self.kernel_func_btf_id(func if kind != "lsm" else f"bpf_lsm_{func}")
        if not btf_id:
            return ProbeResult(False, f"kernel function '{func}' is not in the kernel's BTF")
        prog_type, attach = {
            "fentry": (PROG_TYPE_TRACING, ATTACH_TRACE_FENTRY),
            "fexit": (PROG_TYPE_TRACING, ATTACH_TRACE_FEXIT),
            "lsm": (PROG_TYPE_LSM, ATTACH_LSM_MAC),
        }[kind]
        err, log = self.host.load_program(prog_type, expected_attach_type=attach,
                                          attach_btf_id=btf_id)
        if err == 0:
            return ProbeResult(True)
        last = log.strip().splitlines()[-1] if log.strip() else os.strerror(err)
        return ProbeResult(False, f"the kernel refuses {kind} programs here ({os.strerror(err)}"
                                  f"{'; ' + last if last and last != os.strerror(err) else ''})")

    @_cached
    def can_load_tp_btf(self, name: str = "sched_switch") -> ProbeResult:
        """Whether a BTF tracepoint (tp_btf) program on ``name`` loads here."""
        return self._kept_load(f"tp_btf {name}", lambda: self._can_load_tp_btf(name))

    def _can_load_tp_btf(self, name: str) -> ProbeResult:
        tid = self._vmlinux_find(f"btf_trace_{name}", KIND_TYPEDEF)
        if not tid:
            try:
                self.host.vmlinux_btf()
            except LccError as e:
                return ProbeResult(False, str(e))
            return ProbeResult(False, f"{name} is not in the kernel's BTF")
        err, _log = self.host.load_program(PROG_TYPE_TRACING,
                                           expected_attach_type=ATTACH_TRACE_RAW_TP,
                                           attach_btf_id=tid)
        return ProbeResult(True) if err == 0 else ProbeResult(False, os.strerror(err))

    def _types(self, what: str, table: dict[int, str]) -> dict[str, bool | None]:
        out: dict[str, bool | None] = {}
        for value, name in table.items():
            ret = self.host.probe_type(what, value)
            # Without privileges the kernel refuses every load: "no" would be a guess.
            out[name] = True if ret == 1 else False if ret == 0 and self.host.privileged() \
                else None
        return out

    @_cached
    def prog_types(self) -> dict[str, bool | None]:
        """Program type name -> accepted (None: the probe could not tell, e.g. not root)."""
        return self._types("prog", PROG_TYPES)

    @_cached
    def map_types(self) -> dict[str, bool | None]:
        """Map type name -> accepted (None: the probe could not tell, e.g. not root)."""
        return self._types("map", MAP_TYPES)

    # -- programs by section ---------------------------------------------------------------

    def probe_section(self, section: str) -> ProbeResult:
        """Whether a program with this SEC() name can load and attach on this kernel.

        Checks the attach point exists and, for trampoline programs, that the
        kernel accepts them.  Sections it cannot judge are assumed to work; so
        is a tracepoint while tracefs is not mounted (the attach mounts it).
        """
        kind, _, target = section.partition("/")
        if kind in _TRACING_KINDS:
            return self.can_load_tracing(_TRACING_KINDS[kind], target)
        if kind in _KPROBE_KINDS:
            if not self.has_kprobes():
                return ProbeResult(False, "this kernel has no kprobes (CONFIG_KPROBES is off)")
            func = target.split("+")[0]
            if kind in ("ksyscall", "kretsyscall"):
                return ProbeResult(True)
            if func and "*" not in func and not self.kernel_function_exists(func):
                return ProbeResult(False, f"kernel function '{func}' does not exist")
            return ProbeResult(True)
        if kind in ("tracepoint", "tp"):
            cat, _, name = target.partition("/")
            if cat and name and self.tracepoint_exists(cat, name) is False:
                return ProbeResult(False, f"tracepoint {cat}/{name} does not exist")
            return ProbeResult(True)
        if kind in ("raw_tp", "raw_tracepoint", "tp_btf", "raw_tracepoint.w", "raw_tp.w"):
            if target and not self.raw_tracepoint_exists(target):
                return ProbeResult(False, f"raw tracepoint {target} does not exist")
            return ProbeResult(True)
        if kind in ("uprobe", "uretprobe"):
            if not self.has_uprobes():
                return ProbeResult(False,
                                   "this kernel has no uprobes (CONFIG_UPROBE_EVENTS is off)")
        return ProbeResult(True)

    def summary(self) -> dict[str, object]:
        """Kernel, BTF, libbpf and the attach kinds found by probing (for ``lcc doctor``)."""
        out: dict[str, object] = {"kernel": os.uname().release, "btf": self.has_kernel_btf()}
        try:
            out["libbpf"] = "%d.%d" % self.host.libbpf_version()
        except LccError as e:
            out["libbpf"] = f"missing ({e})"
            return out
        out["kprobes"] = self.has_kprobes()
        out["uprobes"] = self.has_uprobes()
        out["tracefs"] = self.tracefs_dir() or f"missing (tracefs is not mounted; {TRACEFS_HINT})"
        if self.has_kernel_btf():
            r = self.can_load_tracing("fentry", "do_sys_openat2")
            out["fentry"] = True if r else r.reason
        else:
            out["fentry"] = "no kernel BTF"
        return out


# -- the process-wide probes --------------------------------------------------------------

_current: Probes | None = None


def probes() -> Probes:
    """The process-wide :class:`Probes` (over :class:`LocalHost`), made on first use."""
    global _current
    if _current is None:
        _current = Probes()
    return _current


class using:  # noqa: N801 - used as a function: with features.using(p): ...
    """Make ``p`` the process-wide probes for the block (code that takes no ``probes=``).

    A class rather than a contextlib generator: contextlib would cost every
    tool's start some 2 ms to import.
    """

    def __init__(self, p: Probes) -> None:
        self._p = p
        self._old: Probes | None = None

    def __enter__(self) -> Probes:
        global _current
        self._old, _current = _current, self._p
        return self._p

    def __exit__(self, *exc: object) -> None:
        global _current
        _current = self._old


def mount_tracefs(p: Probes | None = None) -> str:
    """Return the tracefs mount point, mounting it at /sys/kernel/tracing if needed.

    The one function of this module that changes the system; only root can
    mount.  Raises LccError when tracefs is missing and cannot be mounted.
    """
    p = p if p is not None else probes()
    found = p.tracefs_dir()
    if found is not None:
        return found
    target = TRACEFS_CANDIDATES[0]
    if p.host.exists(target) and p.host.privileged() and p.host.mount("tracefs", target):
        p.forget()  # answers that depended on tracefs are stale now
        found = p.tracefs_dir()
        if found is not None:
            return found
    raise LccError("tracefs is not mounted", hint=TRACEFS_HINT)


def tracefs_dir() -> str | None:
    """Where tracefs is mounted, or None (never mounts it)."""
    return probes().tracefs_dir()


def tracefs_mounted() -> bool:
    """Whether tracefs is mounted where libbpf looks for it (never mounts it)."""
    return probes().tracefs_mounted()


def has_kernel_btf() -> bool:
    return probes().has_kernel_btf()


def has_kprobes() -> bool:
    """Whether kprobes are configured (CONFIG_KPROBES)."""
    return probes().has_kprobes()


def has_uprobes() -> bool:
    return probes().has_uprobes()


def tracepoint_exists(category: str, name: str) -> bool | None:
    """Whether the tracepoint exists; None when tracefs is not mounted (cannot tell)."""
    return probes().tracepoint_exists(category, name)


def raw_tracepoint_exists(name: str) -> bool:
    return probes().raw_tracepoint_exists(name)


def kernel_func_btf_id(name: str) -> int:
    return probes().kernel_func_btf_id(name)


def kernel_function_exists(name: str) -> bool:
    return probes().kernel_function_exists(name)


def can_load_tracing(kind: str, func: str) -> ProbeResult:
    return probes().can_load_tracing(kind, func)


def can_load_tp_btf(name: str = "sched_switch") -> ProbeResult:
    return probes().can_load_tp_btf(name)


def prog_types() -> dict[str, bool | None]:
    return probes().prog_types()


def map_types() -> dict[str, bool | None]:
    return probes().map_types()


# Capability bits (linux/capability.h).
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39

NOT_PRIVILEGED = "not root: run as root or grant CAP_BPF+CAP_PERFMON"


def bpf_privileges() -> ProbeResult:
    """Whether this process may load and attach tracing programs: the effective
    capabilities CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (which kernels
    before 5.8 need; root has all three unless it dropped them).  Reads
    /proc/self/status; loads nothing."""
    try:
        with open("/proc/self/status") as f:
            eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    except (OSError, ValueError, IndexError, StopIteration):
        # No capability set to read: root is the best guess.
        return ProbeResult(True) if os.geteuid() == 0 else ProbeResult(False, NOT_PRIVILEGED)
    has = lambda bit: bool(eff >> bit & 1)  # noqa: E731
    if has(_CAP_SYS_ADMIN) or (has(_CAP_BPF) and has(_CAP_PERFMON)):
        return ProbeResult(True)
    return ProbeResult(False, NOT_PRIVILEGED)


def probe_section(section: str) -> ProbeResult:
    """Whether a program with this SEC() name can load and attach here; see :class:`Probes`."""
    return probes().probe_section(section)


def summary() -> dict[str, object]:
    return probes().summary()
