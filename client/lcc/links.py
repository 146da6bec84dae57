"""Attaching programs: each attachment is a :class:`Link` with ``close()``.

:func:`attach_auto` attaches by the program's SEC() name; the other
functions attach explicitly (tracepoint, raw tracepoint, kprobe, uprobe,
perf event, XDP, cgroup, iterator).  A failure becomes an error that names
the attach point and says whether the kind of probe exists here at all.
"""

from __future__ import annotations

import errno
import os

from . import _libbpf
from .errors import (AttachPointMissing, BpfError, ClosedError, LccError, NotSupported,
                     from_errno, did_you_mean)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from . import features
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
        from . import features  # only after a failure: not on a tool's start path
        probes = probes if probes is not None else features.probes()
        if not probes.tracefs_mounted():
            features.mount_tracefs(probes)
            ptr = attach()
    return ptr


def _close_tracepoint(cat: str, name: str) -> str:
    """``"; did you mean 'sched/sched_switch'?"`` from tracefs's events, else ""."""
    from . import features
    base = features.tracefs_dir()
    if base is None:
        return ""
    events = os.path.join(base, "events")
    try:
        if os.path.isdir(os.path.join(events, cat)):
            names = [f"{cat}/{n}" for n in os.listdir(os.path.join(events, cat))]
        else:
            names = [f"{c}/{name}" for c in os.listdir(events)
                     if os.path.isdir(os.path.join(events, c, name))]
    except OSError:
        return ""
    return did_you_mean(f"{cat}/{name}", names)


def explain_attach_error(err: int, kind: str, target: str, what: str) -> BpfError:
    """Turn an attach errno into one clear sentence about the attach point."""
    from . import features  # only on this error path: not on a tool's start path
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
                                      f"exist on this kernel{_close_tracepoint(cat, name)}",
                err=err,
                hint="list them with: ls /sys/kernel/tracing/events/<category>")
        if err == errno.EACCES and os.geteuid() == 0:
            # Not a privilege problem for root: the kernel refuses a program
            # whose ctx reads reach past the end of this tracepoint's record.
            return from_errno(err, f"attaching {what}",
                              hint="the program reads past the end of the tracepoint's record: "
                                   "compare its ctx struct with /sys/kernel/tracing/events/"
                                   f"{target}/format")
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
    if kind in ("uprobe", "uretprobe", "usdt") and not features.has_uprobes():
        return NotSupported("uprobe", f"cannot attach {what}: this kernel has no uprobes", err=err)
    if kind == "usdt" and err == errno.ENOENT:
        path, _, probe = target.partition(":")
        return AttachPointMissing("usdt", target, f"cannot attach {what}: {path} has no USDT "
                                                  f"probe {probe}", err=err,
                                  hint=f"list its probes with: readelf -n {path}")
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


def attach_usdt(prog: "Program", binary: str, provider: str, name: str, *, pid: int = -1,
                cookie: int = 0) -> Link:
    """Attach to the USDT probe ``provider:name`` of ``binary`` (a path or a library
    name), in every process (``pid`` -1) or one; ``cookie`` is what
    ``bpf_usdt_cookie()`` returns in the program.  For ``SEC("usdt")`` programs,
    which name no probe.  Raises AttachPointMissing when the binary or the probe
    is absent.
    """
    path = _find_binary(binary)
    where = f"{path}:{provider}:{name}"
    what = f"program '{prog.name}' to USDT probe {where}"
    ptr = _libbpf.attach_usdt(prog.ptr, pid, path, provider, name, cookie)
    return _attach(ptr, prog, what, lambda err: explain_attach_error(err, "usdt", where, what))


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


def attach_perf_event(prog: "Program", *, event_type: int, config: int = 0,
                      sample_period: int = 0, sample_freq: int = 0, pid: int = -1,
                      cpus: Iterable[int] | None = None, group_fd: int = -1, flags: int = 0,
                      **attr: int) -> LinkGroup:
    """Open a perf event on every online CPU (or each of ``cpus``) and attach the program.

    ``event_type`` and ``config`` choose the event (``PERF_TYPE_SOFTWARE`` and
    ``PERF_COUNT_SW_CPU_CLOCK``, say); ``sample_period`` or ``sample_freq``
    (which sets the ``freq`` bit) how often the program runs.  Every other
    ``struct perf_event_attr`` field is a keyword of the kernel's name (see
    :func:`perf_event_attr`): ``wakeup_events=1``, ``precise_ip=2``,
    ``inherit=True``, ``exclude_kernel=True``, and for a hardware breakpoint
    ``bp_type=``, ``bp_addr=``, ``bp_len=``.  ``pid`` -1 counts every process
    (on each CPU of ``cpus``); a pid or tid with ``cpus=[-1]`` follows that
    task on any CPU.  ``group_fd`` and ``flags`` go to perf_event_open(2)
    (``PERF_FLAG_FD_CLOEXEC`` is always added).  Raises TypeError/ValueError
    for an unknown or out-of-range field, BpfError when the kernel refuses.
    """
    raw = perf_event_attr(event_type, config, sample_period=sample_period,
                          sample_freq=sample_freq, **attr)
    cpu_list = list(cpus) if cpus is not None else _online_cpus()
    links: list[Link] = []
    try:
        for cpu in cpu_list:
            fd = _perf_event_open(raw, pid=pid, cpu=cpu, group_fd=group_fd, flags=flags)
            where = f"CPU {cpu}" if cpu >= 0 else f"task {pid}"
            what = f"program '{prog.name}' to perf event {event_type}:{config} on {where}"
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
    where = f"{len(links)} CPUs" if cpu_list != [-1] else f"task {pid}"
    return LinkGroup(links, f"program '{prog.name}' on {where}")


# struct perf_event_attr (include/uapi/linux/perf_event.h): field -> (offset,
# struct format).  Fields that share a union share an offset.
PERF_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7; older kernels take it when the tail is zero
_ATTR_FIELDS: dict[str, tuple[int, str]] = {
    "type": (0, "I"), "config": (8, "Q"),
    "sample_period": (16, "Q"), "sample_freq": (16, "Q"),
    "sample_type": (24, "Q"), "read_format": (32, "Q"),
    "wakeup_events": (48, "I"), "wakeup_watermark": (48, "I"),
    "bp_type": (52, "I"),
    "bp_addr": (56, "Q"), "kprobe_func": (56, "Q"), "uprobe_path": (56, "Q"), "config1": (56, "Q"),
    "bp_len": (64, "Q"), "kprobe_addr": (64, "Q"), "probe_offset": (64, "Q"), "config2": (64, "Q"),
    "branch_sample_type": (72, "Q"), "sample_regs_user": (80, "Q"),
    "sample_stack_user": (88, "I"), "clockid": (92, "i"), "sample_regs_intr": (96, "Q"),
    "aux_watermark": (104, "I"), "sample_max_stack": (108, "H"),
    "aux_sample_size": (112, "I"), "sig_data": (120, "Q"),
}
# The bit fields of the u64 at offset 40: name -> (first bit, width).
_ATTR_BITS: dict[str, tuple[int, int]] = {name: (bit, 1) for bit, name in enumerate((
    "disabled", "inherit", "pinned", "exclusive", "exclude_user", "exclude_kernel",
    "exclude_hv", "exclude_idle", "mmap", "comm", "freq", "inherit_stat", "enable_on_exec",
    "task", "watermark"))}
_ATTR_BITS["precise_ip"] = (15, 2)
_ATTR_BITS.update({name: (bit, 1) for bit, name in enumerate((
    "mmap_data", "sample_id_all", "exclude_host", "exclude_guest", "exclude_callchain_kernel",
    "exclude_callchain_user", "mmap2", "comm_exec", "use_clockid", "context_switch",
    "write_backward", "namespaces", "ksymbol", "bpf_event", "aux_output", "cgroup",
    "text_poke", "build_id", "inherit_thread", "remove_on_exec", "sigtrap"), start=17)})
_ATTR_FLAGS_OFFSET = 40


def perf_event_attr(event_type: int, config: int = 0, **fields: int) -> bytes:
    """``struct perf_event_attr`` as perf_event_open(2) takes it (:data:`PERF_ATTR_SIZE` bytes).

    ``fields`` are the struct's members by their kernel names, values or
    flag bits (``inherit=True``, ``precise_ip=2``); zero and False leave a
    field out.  ``sample_freq`` sets the ``freq`` bit by itself.  Raises
    TypeError for a name the struct lacks (or two members of one union),
    ValueError for a value that does not fit.
    """
    import struct
    raw = bytearray(PERF_ATTR_SIZE)
    struct.pack_into("=IIQ", raw, 0, event_type, PERF_ATTR_SIZE, config)
    if fields.get("sample_freq"):
        if fields.get("sample_period"):
            raise TypeError("perf event: give sample_period or sample_freq, not both")
        fields.setdefault("freq", 1)
    bits = 0
    used: dict[int, str] = {}
    for name, value in fields.items():
        value = int(value)
        if name in _ATTR_BITS:
            first, width = _ATTR_BITS[name]
            if not 0 <= value < 1 << width:
                raise ValueError(f"perf event: {name} must be 0..{(1 << width) - 1}, "
                                 f"not {value}")
            bits |= value << first
            continue
        if name not in _ATTR_FIELDS or name == "type":
            hint = " (the event type is an argument of its own)" if name == "type" else ""
            raise TypeError(f"perf event: struct perf_event_attr has no field {name!r}{hint}")
        if not value:
            continue
        offset, fmt = _ATTR_FIELDS[name]
        if offset in used:
            raise TypeError(f"perf event: {used[offset]} and {name} share a union; give one")
        used[offset] = name
        try:
            struct.pack_into("=" + fmt, raw, offset, value)
        except struct.error:
            raise ValueError(f"perf event: {name}={value} does not fit its field") from None
    struct.pack_into("=Q", raw, _ATTR_FLAGS_OFFSET, bits)
    return bytes(raw)


_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "s390x": 331,
                       "ppc64le": 319, "loongarch64": 241}
_PERF_FLAG_FD_CLOEXEC = 8


def _perf_event_open(attr: bytes, *, pid: int = -1, cpu: int = -1, group_fd: int = -1,
                     flags: int = 0) -> int:
    """perf_event_open(2) for one event (``attr`` from :func:`perf_event_attr`);
    returns the fd (raises BpfError)."""
    import ctypes
    import struct
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise NotSupported("perf_event_open", f"perf events on {os.uname().machine} are not "
                           "supported by lcc yet")
    event_type, _, config = struct.unpack_from("=IIQ", attr)
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    fd = libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(pid), ctypes.c_int(cpu),
                      ctypes.c_int(group_fd), ctypes.c_ulong(flags | _PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        where = f"CPU {cpu}" if cpu >= 0 else f"task {pid}"
        raise from_errno(ctypes.get_errno() or errno.EINVAL,
                         f"opening perf event {event_type}:{config} on {where}")
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
