"""What this kernel can do, found by looking and probing, each answer computed once.

Probes answer questions such as "are kprobes configured", "does this
tracepoint exist", "can an fentry program load here"; the runtime uses them
to pick a working alternative before load and to explain attach failures, and
tests use them to skip by feature name.
"""

from __future__ import annotations

import functools
import os

from . import _libbpf
from ._record import Record
from .btf import KIND_FUNC, KIND_TYPEDEF, Btf
from .errors import LccError

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BPFFS = "/sys/fs/bpf"

# enum bpf_prog_type / bpf_attach_type values used by the probes
PROG_TYPE_TRACING = 26
PROG_TYPE_LSM = 29
ATTACH_TRACE_FENTRY, ATTACH_TRACE_FEXIT, ATTACH_LSM_MAC = 24, 25, 27


def _is_mounted(path: str, fstype: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(ln.split()[1] == path and ln.split()[2] == fstype for ln in f)
    except OSError:
        return False


def tracefs_mounted() -> bool:
    """Whether tracefs is mounted where libbpf looks for it (never mounts it)."""
    return any(os.path.exists(os.path.join(p, "events")) for p in TRACEFS_CANDIDATES)


@functools.cache
def tracefs() -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if needed (root only)."""
    for p in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(p, "events")):
            return p
    target = TRACEFS_CANDIDATES[0]
    if os.path.isdir(target) and os.geteuid() == 0:
        import subprocess
        r = subprocess.run(["mount", "-t", "tracefs", "tracefs", target],
                           capture_output=True, text=True)
        if r.returncode == 0 and os.path.exists(os.path.join(target, "events")):
            return target
    raise LccError("tracefs is not mounted",
                   hint="mount it: mount -t tracefs tracefs /sys/kernel/tracing")


def ensure_bpffs() -> str:
    """Mount the BPF filesystem at /sys/fs/bpf if it is not there (root only)."""
    if not _is_mounted(BPFFS, "bpf") and os.geteuid() == 0:
        import subprocess
        os.makedirs(BPFFS, exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], capture_output=True)
    return BPFFS


def has_kernel_btf() -> bool:
    return os.path.exists("/sys/kernel/btf/vmlinux")


@functools.cache
def has_kprobes() -> bool:
    """Whether kprobes are configured (CONFIG_KPROBES): the kprobe PMU or kprobe_events."""
    if os.path.exists("/sys/bus/event_source/devices/kprobe/type"):
        return True
    try:
        return os.path.exists(os.path.join(tracefs(), "kprobe_events"))
    except LccError:
        return False


@functools.cache
def has_uprobes() -> bool:
    return os.path.exists("/sys/bus/event_source/devices/uprobe/type")


def tracepoint_exists(category: str, name: str) -> bool:
    try:
        return os.path.isdir(os.path.join(tracefs(), "events", category, name))
    except LccError:
        return False


def raw_tracepoint_exists(name: str) -> bool:
    """raw_tp and tp_btf targets: the kernel's BTF has ``btf_trace_<name>``."""
    try:
        return Btf.vmlinux().find(f"btf_trace_{name}", KIND_TYPEDEF) is not None
    except LccError:
        return False


def kernel_func_btf_id(name: str) -> int:
    """BTF id of kernel function ``name`` (0 when absent or without BTF)."""
    try:
        t = Btf.vmlinux().find(name, KIND_FUNC)
    except LccError:
        return 0
    return t.id if t is not None else 0


@functools.cache
def _kallsyms_text() -> frozenset[str]:
    names = set()
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names)


def kernel_function_exists(name: str) -> bool:
    """Whether ``name`` is a function of the running kernel (kallsyms or BTF)."""
    return name in _kallsyms_text() or kernel_func_btf_id(name) > 0


class ProbeResult(Record):
    """A probe's answer: ``ok``, else ``reason`` says what is missing. True when ok."""

    __slots__ = ("ok", "reason")
    _by_value = True

    def __init__(self, ok: bool, reason: str = "") -> None:
        self._set(ok=ok, reason=reason)

    def __bool__(self) -> bool:
        return self.ok


@functools.cache
def can_load_tracing(kind: str, func: str) -> ProbeResult:
    """Whether an fentry/fexit/lsm program on ``func`` loads here (loads a 2-insn probe)."""
    btf_id = kernel_func_btf_id(func if kind != "lsm" else f"bpf_lsm_{func}")
    if not btf_id:
        return ProbeResult(False, f"kernel function '{func}' is not in the kernel's BTF")
    prog_type, attach = {
        "fentry": (PROG_TYPE_TRACING, ATTACH_TRACE_FENTRY),
        "fexit": (PROG_TYPE_TRACING, ATTACH_TRACE_FEXIT),
        "lsm": (PROG_TYPE_LSM, ATTACH_LSM_MAC),
    }[kind]
    err, log = _libbpf.prog_load_probe(prog_type, expected_attach_type=attach,
                                       attach_btf_id=btf_id)
    if err == 0:
        return ProbeResult(True)
    last = log.strip().splitlines()[-1] if log.strip() else os.strerror(err)
    return ProbeResult(False, f"the kernel refuses {kind} programs here ({os.strerror(err)}"
                              f"{'; ' + last if last and last != os.strerror(err) else ''})")


_TRACING_KINDS = {"fentry": "fentry", "fexit": "fexit", "fentry.s": "fentry",
                  "fexit.s": "fexit", "fmod_ret": "fentry", "lsm": "lsm", "lsm.s": "lsm"}
_KPROBE_KINDS = {"kprobe", "kretprobe", "ksyscall", "kretsyscall", "kprobe.multi",
                 "kretprobe.multi"}


def probe_section(section: str) -> ProbeResult:
    """Whether a program with this SEC() name can load and attach on this kernel.

    Checks the attach point exists and, for trampoline programs, that the
    kernel accepts them.  Sections it cannot judge are assumed to work.
    """
    kind, _, target = section.partition("/")
    if kind in _TRACING_KINDS:
        return can_load_tracing(_TRACING_KINDS[kind], target)
    if kind in _KPROBE_KINDS:
        if not has_kprobes():
            return ProbeResult(False, "this kernel has no kprobes (CONFIG_KPROBES is off)")
        func = target.split("+")[0]
        if kind in ("ksyscall", "kretsyscall"):
            return ProbeResult(True)
        if func and "*" not in func and not kernel_function_exists(func):
            return ProbeResult(False, f"kernel function '{func}' does not exist")
        return ProbeResult(True)
    if kind in ("tracepoint", "tp"):
        cat, _, name = target.partition("/")
        if cat and name and not tracepoint_exists(cat, name):
            return ProbeResult(False, f"tracepoint {cat}/{name} does not exist")
        return ProbeResult(True)
    if kind in ("raw_tp", "raw_tracepoint", "tp_btf", "raw_tracepoint.w", "raw_tp.w"):
        if target and not raw_tracepoint_exists(target):
            return ProbeResult(False, f"raw tracepoint {target} does not exist")
        return ProbeResult(True)
    if kind in ("uprobe", "uretprobe"):
        if not has_uprobes():
            return ProbeResult(False, "this kernel has no uprobes (CONFIG_UPROBE_EVENTS is off)")
    return ProbeResult(True)


def summary() -> dict[str, object]:
    """What `lcc doctor` prints: kernel, BTF, libbpf and attach kinds found by probing."""
    rel = os.uname().release
    out: dict[str, object] = {"kernel": rel, "btf": has_kernel_btf()}
    try:
        out["libbpf"] = "%d.%d" % _libbpf.version()
    except LccError as e:
        out["libbpf"] = f"missing ({e})"
        return out
    out["kprobes"] = has_kprobes()
    out["uprobes"] = has_uprobes()
    try:
        out["tracefs"] = tracefs()
    except LccError as e:
        out["tracefs"] = f"missing ({e})"
    if has_kernel_btf():
        r = can_load_tracing("fentry", "do_sys_openat2")
        out["fentry"] = True if r else r.reason
    else:
        out["fentry"] = "no kernel BTF"
    return out
