"""Attaching programs: each attachment is a :class:`Link` with ``close()``.

:func:`attach_auto` attaches by the program's SEC() name; the other
functions attach explicitly (tracepoint, raw tracepoint, kprobe, uprobe,
perf event, XDP, cgroup, iterator).  A failure becomes an error that names
the attach point and says whether the kind of probe exists here at all.
"""

from __future__ import annotations

import errno
import os

from . import _libbpf, features
from .errors import (AttachPointMissing, BpfError, ClosedError, LccError, NotSupported,
                     from_errno)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .object import Program


class Link:
    """One attachment of a program; :meth:`close` detaches it (idempotent)."""

    def __init__(self, ptr: int, description: str, program: "Program | None" = None) -> None:
        self._ptr = ptr
        self.description = description
        self.program = program

    @property
    def fd(self) -> int:
        if not self._ptr:
            raise ClosedError(f"link {self.description} is closed")
        return int(_libbpf.lib().bpf_link__fd(self._ptr))

    @property
    def closed(self) -> bool:
        return not self._ptr

    def close(self) -> None:
        if self._ptr:
            _libbpf.lib().bpf_link__destroy(self._ptr)
            self._ptr = 0

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "attached"
        return f"<Link {self.description} {state}>"


class LinkGroup:
    """Several links that act as one (a perf event on every CPU)."""

    def __init__(self, links: list[Link], description: str) -> None:
        self.links = links
        self.description = description

    @property
    def closed(self) -> bool:
        return all(lk.closed for lk in self.links)

    def close(self) -> None:
        for lk in self.links:
            lk.close()

    def __enter__(self) -> "LinkGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LinkGroup {self.description} x{len(self.links)}>"


def _attach(ptr: int | None, prog: "Program", what: str, explain) -> Link:
    if not ptr:
        err = _libbpf.errno_or(errno.EINVAL)
        raise explain(err)
    return Link(ptr, what, prog)


def _generic_error(err: int, what: str) -> BpfError:
    return from_errno(err, f"attaching {what}")


# Program kinds libbpf never attaches by section name: they need an
# interface, a cgroup, a perf event or a socket given at attach time.
_EXPLICIT_KINDS = frozenset({
    "xdp", "cgroup", "cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "sockops", "sk_skb",
    "sk_msg", "sk_lookup", "sk_reuseport", "socket", "tc", "tcx", "classifier", "action",
    "perf_event", "flow_dissector", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local",
    "lirc_mode2", "netfilter", "netkit", "syscall", "struct_ops", "sockops",
})
# Kinds that attach by name only when the section names a target.
_TARGETED_KINDS = frozenset({
    "tracepoint", "tp", "raw_tp", "raw_tracepoint", "raw_tp.w", "raw_tracepoint.w",
    "kprobe", "kretprobe", "ksyscall", "kretsyscall", "uprobe", "uretprobe", "usdt",
})


def needs_explicit_attach(prog: "Program") -> bool:
    """Whether ``prog`` can only be attached by an explicit ``attach_*`` call.

    True for kinds that need a runtime target (XDP, cgroup, perf event, ...)
    and for sections without a target (``SEC("tracepoint")``, ``SEC("uprobe")``).
    """
    kind = prog.kind.split(".")[0] if prog.kind not in _TARGETED_KINDS else prog.kind
    if kind in _EXPLICIT_KINDS:
        return True
    if kind in _TARGETED_KINDS or kind in ("uprobe", "uretprobe"):
        if not prog.target:
            return True
        # libbpf attaches uprobes by name only as SEC("uprobe/<binary>:<function>")
        if kind in ("uprobe", "uretprobe", "usdt") and ":" not in prog.target:
            return True
    return False


def attach_auto(prog: "Program") -> Link:
    """Attach by SEC() name, as libbpf's ``bpf_program__attach`` does."""
    kind, target = prog.kind, prog.target
    what = f"program '{prog.name}' (SEC(\"{prog.section}\"))"
    _libbpf.clear_messages()
    lb = _libbpf.lib()
    if kind in ("tracepoint", "tp"):
        ptr = _with_tracefs(lambda: lb.bpf_program__attach(prog.ptr))
    else:
        ptr = lb.bpf_program__attach(prog.ptr)
    return _attach(ptr, prog, what, lambda err: explain_attach_error(err, kind, target, what))


def _with_tracefs(attach: Callable[[], int | None],
                  probes: features.Probes | None = None) -> int | None:
    """Run a tracepoint attach (libbpf reads tracepoint ids from tracefs); if it
    fails and tracefs is not mounted, mount it (root) and try once more.

    tracefs is looked for only after a failure: looking (a stat of its
    events directory) is a noticeable part of a tool's start, and libbpf
    looks anyway.  ``probes`` (default: the process-wide ones) say whether it
    is mounted.  Raises LccError when tracefs is missing and cannot be
    mounted.
    """
    ptr = attach()
    if not ptr:
        probes = probes if probes is not None else features.probes()
        if not probes.tracefs_mounted():
            features.mount_tracefs(probes)
            ptr = attach()
    return ptr


def explain_attach_error(err: int, kind: str, target: str, what: str) -> BpfError:
    """Turn an attach errno into one clear sentence about the attach point."""
    if kind in ("kprobe", "kretprobe", "ksyscall", "kretsyscall"):
        if not features.has_kprobes():
            return NotSupported(
                "kprobe", f"cannot attach {what}: this kernel has no kprobes "
                          "(CONFIG_KPROBES is off; /sys/bus/event_source/devices/kprobe is "
                          "missing)",
                err=err, hint="use a tracepoint or tp_btf program instead, or declare one as a "
                              "fallback alternative")
        func = target.split("+")[0]
        if func and not features.kernel_function_exists(func):
            return AttachPointMissing(
                "kprobe", func, f"cannot attach {what}: kernel function '{func}' does not exist "
                                "(not in /proc/kallsyms; it may be inlined or renamed)", err=err)
    if kind in ("tracepoint", "tp"):
        cat, _, name = target.partition("/")
        if features.tracepoint_exists(cat, name) is False:
            return AttachPointMissing(
                "tracepoint", target, f"cannot attach {what}: tracepoint {target} does not "
                                      "exist on this kernel", err=err,
                hint="list them with: ls /sys/kernel/tracing/events/<category>")
    if kind in ("raw_tp", "raw_tracepoint", "tp_btf"):
        if target and not features.raw_tracepoint_exists(target):
            return AttachPointMissing(
                "raw_tracepoint", target,
                f"cannot attach {what}: raw tracepoint {target} does not exist on this kernel",
                err=err)
    if kind in ("fentry", "fexit", "fmod_ret", "lsm"):
        if not features.kernel_func_btf_id(target if kind != "lsm" else f"bpf_lsm_{target}"):
            return AttachPointMissing(kind, target, f"cannot attach {what}: kernel function "
                                                    f"'{target}' is not in the kernel's BTF",
                                      err=err)
        return NotSupported(kind, f"cannot attach {what}: this kernel refuses {kind} "
                                  f"programs ({os.strerror(err)})", err=err,
                            hint="declare a kprobe or tracepoint alternative (fallback=...)")
    if kind in ("uprobe", "uretprobe") and not features.has_uprobes():
        return NotSupported("uprobe", f"cannot attach {what}: this kernel has no uprobes", err=err)
    if err in (errno.EPERM, errno.EACCES):
        return from_errno(err, f"attaching {what}")
    if err == errno.ESRCH or err == errno.ENOENT:
        return AttachPointMissing(kind or "attach", target,
                                  f"cannot attach {what}: the attach point does not exist "
                                  f"({os.strerror(err)})", err=err)
    if err == errno.EOPNOTSUPP and not target:
        return NotSupported(kind, f"{what} cannot be attached automatically by its section name",
                            err=err, hint="attach it explicitly (attach_uprobe, attach_xdp, ...)")
    return _generic_error(err, what)


def attach_tracepoint(prog: "Program", category: str, name: str) -> Link:
    what = f"program '{prog.name}' to tracepoint {category}/{name}"
    lb = _libbpf.lib()
    ptr = _with_tracefs(lambda: lb.bpf_program__attach_tracepoint(prog.ptr, category.encode(),
                                                                  name.encode()))
    return _attach(ptr, prog, what,
                   lambda err: explain_attach_error(err, "tracepoint", f"{category}/{name}", what))


def attach_raw_tracepoint(prog: "Program", name: str) -> Link:
    what = f"program '{prog.name}' to raw tracepoint {name}"
    ptr = _libbpf.lib().bpf_program__attach_raw_tracepoint(prog.ptr, name.encode())
    return _attach(ptr, prog, what, lambda err: explain_attach_error(err, "raw_tp", name, what))


def attach_kprobe(prog: "Program", func: str, *, retprobe: bool = False) -> Link:
    kind = "kretprobe" if retprobe else "kprobe"
    what = f"program '{prog.name}' to {kind} {func}"
    ptr = _libbpf.lib().bpf_program__attach_kprobe(prog.ptr, retprobe, func.encode())
    return _attach(ptr, prog, what, lambda err: explain_attach_error(err, kind, func, what))


def attach_uprobe(prog: "Program", binary: str, symbol: str | None = None, *, offset: int = 0,
                  pid: int = -1, retprobe: bool = False) -> Link:
    """Attach to ``symbol`` (plus ``offset``) or to ``offset`` in ``binary``.

    ``binary`` may be a path or a library name (``libc.so.6``); ``pid`` -1 means
    every process.  Raises AttachPointMissing when the file or symbol is absent.
    """
    path = _find_binary(binary)
    kind = "uretprobe" if retprobe else "uprobe"
    where = f"{path}:{symbol}" if symbol else f"{path}:{offset:#x}"
    what = f"program '{prog.name}' to {kind} {where}"
    if symbol:
        offset = _symbol_offset(path, symbol, kind) + offset
    ptr = _libbpf.attach_uprobe(prog.ptr, pid, path, offset, retprobe)
    return _attach(ptr, prog, what, lambda err: explain_attach_error(err, kind, where, what))


def _find_binary(binary: str) -> str:
    if os.path.sep in binary:
        if not os.path.exists(binary):
            raise AttachPointMissing("uprobe", binary, f"binary {binary} does not exist")
        return binary
    from .symbols import resolve_binary
    try:
        return str(resolve_binary(binary))
    except LccError as e:  # BinaryNotFound: says where it looked
        raise AttachPointMissing("uprobe", binary, f"cannot find binary or library '{binary}'",
                                 hint="give its full path") from e


def _symbol_offset(path: str, symbol: str, kind: str) -> int:
    from .symbols import ElfSymbols
    try:
        return ElfSymbols(path).offset(symbol)
    except KeyError as e:  # SymbolNotFound: its hint (a stripped binary, say) may help
        raise AttachPointMissing(kind, symbol, f"symbol '{symbol}' is not in {path}") from e


def attach_perf_event(prog: "Program", *, event_type: int, config: int, sample_period: int = 0,
                      sample_freq: int = 0, pid: int = -1,
                      cpus: Iterable[int] | None = None) -> LinkGroup:
    """Open a perf event on every CPU (or ``cpus``) and attach the program to each."""
    cpu_list = list(cpus) if cpus is not None else _online_cpus()
    links: list[Link] = []
    try:
        for cpu in cpu_list:
            fd = _perf_event_open(event_type, config, sample_period=sample_period,
                                  sample_freq=sample_freq, pid=pid, cpu=cpu)
            what = f"program '{prog.name}' to perf event {event_type}:{config} on CPU {cpu}"
            ptr = _libbpf.lib().bpf_program__attach_perf_event(prog.ptr, fd)
            if not ptr:
                err = _libbpf.errno_or(errno.EINVAL)
                os.close(fd)
                raise _generic_error(err, what)
            # The link owns the perf event now: bpf_link__destroy closes it.
            links.append(Link(ptr, what, prog))
    except BaseException:
        for lk in links:
            lk.close()
        raise
    return LinkGroup(links, f"program '{prog.name}' on {len(links)} CPUs")


_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "s390x": 331,
                       "ppc64le": 319, "loongarch64": 241}
_PERF_FLAG_FD_CLOEXEC = 8


def _perf_event_open(event_type: int, config: int, *, sample_period: int = 0,
                     sample_freq: int = 0, pid: int = -1, cpu: int = -1) -> int:
    """perf_event_open(2) for one event; returns the fd (raises BpfError)."""
    import ctypes
    import struct
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise NotSupported("perf_event_open", f"perf events on {os.uname().machine} are not "
                           "supported by lcc yet")
    freq = 1 if sample_freq else 0
    flags = (freq << 10)  # bit 10: freq; everything else (disabled, inherit...) off
    attr = bytearray(128)
    struct.pack_into("=IIQQQQQ", attr, 0, event_type, len(attr), config,
                     sample_freq or sample_period, 0, 0, flags)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    fd = libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(pid), ctypes.c_int(cpu),
                      ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise from_errno(ctypes.get_errno() or errno.EINVAL,
                         f"opening perf event {event_type}:{config} on CPU {cpu}")
    return fd


def _online_cpus() -> list[int]:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def attach_xdp(prog: "Program", ifindex: int | str) -> Link:
    if isinstance(ifindex, str):
        import socket
        try:
            idx = socket.if_nametoindex(ifindex)
        except OSError as e:
            raise AttachPointMissing("xdp", ifindex,
                                     f"network device '{ifindex}' does not exist") from e
        ifindex = idx
    what = f"program '{prog.name}' to XDP on ifindex {ifindex}"
    ptr = _libbpf.lib().bpf_program__attach_xdp(prog.ptr, int(ifindex))
    return _attach(ptr, prog, what, lambda err: _generic_error(err, what))


def attach_cgroup(prog: "Program", cgroup: int | str) -> Link:
    """Attach to a cgroup given as an open fd or a cgroup v2 directory path."""
    own_fd = None
    if isinstance(cgroup, str):
        try:
            own_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise AttachPointMissing("cgroup", cgroup, f"cannot open cgroup {cgroup}: "
                                     f"{e.strerror}", err=e.errno or errno.ENOENT) from e
        fd = own_fd
    else:
        fd = cgroup
    what = f"program '{prog.name}' to cgroup {cgroup}"
    try:
        ptr = _libbpf.lib().bpf_program__attach_cgroup(prog.ptr, fd)
        return _attach(ptr, prog, what, lambda err: _generic_error(err, what))
    finally:
        if own_fd is not None:
            os.close(own_fd)


def attach_iter(prog: "Program") -> Link:
    what = f"iterator program '{prog.name}'"
    ptr = _libbpf.lib().bpf_program__attach_iter(prog.ptr, None)
    return _attach(ptr, prog, what, lambda err: _generic_error(err, what))


def read_iter(link: Link) -> bytes:
    """Run an iterator link once and return everything it wrote."""
    fd = _libbpf.check(_libbpf.lib().bpf_iter_create(link.fd), "creating an iterator")
    chunks = []
    try:
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks)
