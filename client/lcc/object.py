"""A loaded BPF object: programs in the kernel, maps with fds, globals in map memory.

An object's life has steps: open and configure an inert
:class:`lcc.spec.ObjectSpec` (program selection, ``.rodata`` knobs, map
sizes), then :meth:`ObjectSpec.load` makes the live :class:`BpfObject`
defined here, then attach (see :mod:`lcc.links`).  :meth:`BpfObject.close`
releases it; :class:`lcc.ClbcBase` drives all of this for the common case.

This module also holds what both sides share: :class:`_Handle` (one opened
``struct bpf_object``), :class:`MapSpec`, and the error for a failed load.
"""

from __future__ import annotations

import errno
import mmap
import os

from . import _libbpf
from ._record import Record
from .btf import Btf, BtfType
from .errors import (BpfPermissionError, BtfError, ClosedError, LccError, ProgramLoadError,
                     from_errno, strerror)
from .globalvars import GlobalSection, GlobalsMixin

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from typing import Protocol

    class ProgramInfo(Protocol):
        """What a live program and a load error take from a program's spec
        (:class:`lcc.spec.ProgramSpec`; this module does not import lcc.spec,
        which imports it)."""
        name: str
        section: str
        kind: str
        target: str

_LOG_SIZE = 256 << 10  # verifier log buffer; the kernel keeps the tail when it overflows
_F_MMAPABLE = 1 << 10  # BPF_F_MMAPABLE
_KEY0 = bytes(4)  # the key of a global-data map's one element


class _Handle:
    """One ``struct bpf_object`` opened from bytes, and what is read from it once.

    A spec stages one (configured, not loaded); loading it hands it to the
    live object, which frees it in close().  A handle whose load failed is
    freed at once: libbpf cannot load it again.
    """

    def __init__(self, data: bytes, *, name: str | None, btf_custom_path: str | None) -> None:
        self.data = data  # libbpf keeps pointers into the buffer
        # libbpf loads without a log first and, when the kernel rejects a
        # program, loads it again with the verifier log going here.
        self.log = _libbpf.log_buffer(_LOG_SIZE)
        _libbpf.clear_messages()
        self.ptr = _libbpf.open_object(data, name=name, btf_custom_path=btf_custom_path,
                                       log_buf=self.log)
        lb = _libbpf.lib()
        self.btf = Btf(lb.bpf_object__btf(self.ptr), owner=self)
        self.programs: dict[str, int] = {
            _libbpf.cstr(lb.bpf_program__name(p)): p for p in _libbpf.iter_programs(self.ptr)}
        self.maps: dict[str, int] = {
            _libbpf.cstr(lb.bpf_map__name(m)): m for m in _libbpf.iter_maps(self.ptr)}

    def verifier_log(self) -> str:
        return self.log.value.decode("utf-8", "replace").strip()

    def close(self) -> None:
        if self.ptr:
            self.btf._detach()  # bpf_object__close frees the object's BTF
            _libbpf.lib().bpf_object__close(self.ptr)
            self.ptr = 0


class MapSpec(Record):
    """What libbpf knows of a map: its name, type, sizes and BTF types (read-only)."""

    __slots__ = ("name", "type", "key_size", "value_size", "max_entries", "flags",
                 "key_type", "value_type", "internal")
    _by_value = True

    def __init__(self, name: str, type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int, key_type: BtfType | None,
                 value_type: BtfType | None, internal: bool) -> None:
        self._set(name=name, type=type, key_size=key_size, value_size=value_size,
                  max_entries=max_entries, flags=flags, key_type=key_type,
                  value_type=value_type, internal=internal)

    @property
    def type_name(self) -> str:
        lb = _libbpf.lib()
        if _libbpf.has("libbpf_bpf_map_type_str"):
            return _libbpf.cstr(lb.libbpf_bpf_map_type_str(self.type)) or str(self.type)
        return str(self.type)


class _Maps:
    """Maps by name, as a spec and a live object share them.

    Needs ``btf``, ``_map_btf_ids`` (libbpf name -> BTF key/value type ids,
    as the object declares them), ``_section_maps`` (``.bss`` -> libbpf's
    name) and ``_map_ptr_of(libbpf name)``.
    """

    btf: Btf
    _map_btf_ids: dict[str, tuple[int, int]]
    _section_maps: dict[str, str]

    def _map_ptr_of(self, name: str) -> int:
        raise NotImplementedError

    def map_names(self) -> list[str]:
        return list(self._map_btf_ids)

    def _map_name(self, name: str) -> str:
        """libbpf's name of a map; global data maps also answer to their section (``.bss``)."""
        if name in self._map_btf_ids:
            return name
        if name in self._section_maps:
            return self._section_maps[name]
        user = [n for n in self._map_btf_ids if n not in self._section_maps.values()]
        raise KeyError(f"no map named '{name}' (the object has: {', '.join(user) or 'none'})")

    def map_ptr(self, name: str) -> int:
        return self._map_ptr_of(self._map_name(name))

    def map_spec(self, name: str) -> MapSpec:
        m = self.map_ptr(name)
        lb = _libbpf.lib()
        kid, vid = self._map_btf_ids[self._map_name(name)]
        return MapSpec(
            name=name, type=lb.bpf_map__type(m), key_size=lb.bpf_map__key_size(m),
            value_size=lb.bpf_map__value_size(m), max_entries=lb.bpf_map__max_entries(m),
            flags=lb.bpf_map__map_flags(m),
            key_type=self.btf.type(kid) if kid else None,
            value_type=self.btf.type(vid) if vid else None,
            internal=bool(lb.bpf_map__is_internal(m)))


class Program:
    """One program of a loaded object: its name, section, fd and kernel id."""

    def __init__(self, obj: "BpfObject", spec: ProgramInfo, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.spec = spec
        self.name: str = spec.name
        self.section: str = spec.section

    @property
    def ptr(self) -> int:
        self._obj._check_open()
        return self._ptr

    @property
    def autoload(self) -> bool:
        """Whether it was loaded (fixed at load: change it on the spec for the next load)."""
        return bool(_libbpf.lib().bpf_program__autoload(self.ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        raise LccError(f"program '{self.name}': autoload can only change before load()")

    @property
    def fd(self) -> int:
        """The program's fd after load (-1 if it was not loaded)."""
        fd = int(_libbpf.lib().bpf_program__fd(self.ptr))
        return fd if fd >= 0 else -1  # libbpf says -ENOENT

    @property
    def id(self) -> int | None:
        """The kernel's id of the loaded program (as ``bpftool prog show`` lists it)."""
        fd = self.fd
        return int(_libbpf.fd_info(fd)["prog_id"]) if fd >= 0 else None

    @property
    def prog_type(self) -> str:
        """The program type as libbpf names it (``tracepoint``, ``kprobe``, ...)."""
        return prog_type_name(self.ptr)

    @property
    def kind(self) -> str:
        """The section's prefix: ``kprobe``, ``fentry``, ``tracepoint``, ``tp_btf``..."""
        return self.spec.kind

    @property
    def target(self) -> str:
        """What the section says to attach to (``tcp_v4_connect``, ``sched/sched_switch``)."""
        return self.spec.target

    def __repr__(self) -> str:
        return f"<Program {self.name} SEC({self.section!r})>"


def prog_type_name(ptr: int) -> str:
    lb = _libbpf.lib()
    t = lb.bpf_program__type(ptr)
    if _libbpf.has("libbpf_bpf_prog_type_str"):
        return _libbpf.cstr(lb.libbpf_bpf_prog_type_str(t)) or str(t)
    return str(t)


class BpfObject(_Maps, GlobalsMixin):
    """A loaded BPF object; owns its programs and maps in the kernel until :meth:`close`.

    Made by :meth:`lcc.spec.ObjectSpec.load`, never directly.  ``spec`` is
    the spec it was loaded from (load it again for a second, independent
    copy).
    """

    loaded = True  # a spec says False

    def __init__(self, handle: _Handle, spec: Any) -> None:
        self._h = handle
        self.spec = spec
        self.name = spec.name
        self.btf = handle.btf
        self._mmaps: dict[str, tuple[mmap.mmap, memoryview]] = {}
        self._buffers: list[Any] = []  # native parts of ring/perf buffers on our maps
        self.programs: dict[str, Program] = {
            n: Program(self, ps, handle.programs[n]) for n, ps in spec.programs.items()}
        # As the spec read them at open: libbpf zeroes some type ids at load.
        self._map_btf_ids = spec._map_btf_ids
        self._section_maps = spec._section_maps
        self._globals = {name: GlobalSection(self, gs._type_id, name)
                         for name, gs in spec._globals.items()}

    # -- lifecycle ----------------------------------------------------------

    def _check_open(self) -> None:
        if not self._h.ptr:
            raise ClosedError("this BPF object is closed")

    @property
    def closed(self) -> bool:
        return not self._h.ptr

    def load(self) -> None:
        """Nothing to do: it is loaded (kept so that code written for a spec runs)."""
        self._check_open()

    def adopt_buffer(self, native: Any) -> None:
        """Close ``native`` (the libbpf consumer or mappings of a buffer on one of
        this object's maps: anything with ``close()`` and ``closed``) before the
        object itself.  It must hold no Python callback: see :class:`lcc.ClbcBase`."""
        self._buffers = [b for b in self._buffers if not b.closed]
        self._buffers.append(native)

    def close_buffers(self) -> None:
        """Close the buffers' native parts handed to :meth:`adopt_buffer`. Idempotent."""
        for b in self._buffers:
            b.close()
        self._buffers.clear()

    def close(self) -> None:
        """Free the buffers on its maps, unload programs and maps, free the object.

        Idempotent."""
        self.close_buffers()
        # Release the views first: a mapping that is still exported cannot
        # be unmapped, and it would keep the kernel map alive after close.
        for mm, view in self._mmaps.values():
            view.release()
            try:
                mm.close()
            except BufferError:
                pass  # a view made by the caller is still alive; the GC unmaps it
        self._mmaps.clear()
        self._h.close()

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- configuration belongs to the spec ------------------------------------

    def select(self, which: Any) -> None:
        raise LccError("programs can only be selected before load() (on the spec)")

    def resize_map(self, name: str, max_entries: int) -> None:
        raise LccError(f"map '{name}' can only be resized before load()")

    # -- maps -----------------------------------------------------------------

    def _map_ptr_of(self, name: str) -> int:
        self._check_open()
        return self._h.maps[name]

    def map_fd(self, name: str) -> int:
        fd = _libbpf.lib().bpf_map__fd(self.map_ptr(name))
        if fd < 0:
            raise LccError(f"map '{name}' has no fd")
        return fd

    # -- globals: the kernel's map memory ----------------------------------------

    def _global_memory(self, section: str) -> memoryview:
        got = self._mmaps.get(section)
        if got is not None:
            return got[1]
        ptr = self.map_ptr(section)
        if _libbpf.lib().bpf_map__map_flags(ptr) & _F_MMAPABLE:
            try:
                got = self._mmaps[section] = self._map_memory(ptr, section)
                return got[1]
            except OSError:
                pass  # read it through the map instead
        # libbpf leaves BPF_F_MMAPABLE off a section that holds only static
        # variables (runqlat's `static struct hist zero`): a copy of its one value.
        return memoryview(self._section_value(ptr, section))

    def _section_value(self, map_ptr: int, section: str) -> bytearray:
        """The value of a global-data map (one element, key 0), read with a lookup."""
        fd = _libbpf.lib().bpf_map__fd(map_ptr)
        value = _libbpf.map_lookup(fd, _KEY0, _libbpf.lib().bpf_map__value_size(map_ptr))
        if value is None:
            raise LccError(f"{section} has no value in the kernel")
        return value

    def _write_global(self, section: str, offset: int, data: bytes) -> None:
        if section.startswith(".rodata"):
            raise LccError(f"{section} is read-only after load; set its variables before "
                           "load() (ClbcBase(..., rodata={...}) or load=False)")
        mem = self._global_memory(section)
        if section in self._mmaps:
            mem[offset:offset + len(data)] = data
            return
        # Not mapped: read, change and write back the whole value (a program
        # writing the section meanwhile may see its change undone).
        value = bytearray(mem)
        value[offset:offset + len(data)] = data
        ptr = self.map_ptr(section)
        _libbpf.map_update(_libbpf.lib().bpf_map__fd(ptr), _KEY0, bytes(value))

    def _map_memory(self, map_ptr: int, section: str) -> tuple[mmap.mmap, memoryview]:
        fd = _libbpf.lib().bpf_map__fd(map_ptr)
        size = _libbpf.lib().bpf_map__value_size(map_ptr)
        length = max(mmap.PAGESIZE, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        prot = mmap.PROT_READ if section.startswith(".rodata") else mmap.PROT_READ | mmap.PROT_WRITE
        mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot)
        with memoryview(mm) as whole:
            view = whole[:size]
        return mm, view

    def __repr__(self) -> str:
        return f"<BpfObject {self.name} {'closed' if self.closed else 'loaded'}>"


_BTF_FAILURES = ("failed to parse target BTF", "Error loading vmlinux BTF",
                 "failed to find valid kernel BTF", "failed to load vmlinux BTF")


def load_error(err: int, messages: list[str], log: str = "", *,
               programs: Mapping[str, ProgramInfo] | None = None,
               btf_custom_path: str | None = None) -> LccError:
    """The error for a failed bpf_object__load, from libbpf's messages and the verifier log.

    A program the kernel rejected -> ProgramLoadError (with the verifier
    log); target BTF missing or unreadable -> BtfError; otherwise the
    BpfError for ``err`` with libbpf's most telling message.
    """
    import re  # only on this error path: keeps re out of lcc's start-up
    failed = None
    for line in messages:
        m = re.search(r"prog '([^']+)': (?:failed to load|-- BEGIN PROG LOAD LOG)", line)
        if m:
            failed = m.group(1)
    if failed is not None:
        log = log or _verifier_log(messages)
        hint = None
        if err == errno.EPERM and not log:
            hint = _eperm_hint((programs or {}).get(failed))
        return ProgramLoadError(err, failed, log, hint=hint)
    if any(marker in line for line in messages for marker in _BTF_FAILURES):
        if btf_custom_path:
            return BtfError(f"the BTF file {btf_custom_path} cannot be used for CO-RE "
                            f"relocations: {strerror(err)}",
                            hint="give a vmlinux ELF with .BTF or a raw BTF file of the target "
                                 "kernel")
        return BtfError("this kernel has no BTF (/sys/kernel/btf/vmlinux), which CO-RE "
                        "programs need to load",
                        hint="use a kernel built with CONFIG_DEBUG_INFO_BTF, or pass btf='server' "
                             "or btf='/path/to/vmlinux' to ClbcBase")
    if err in (errno.EPERM, errno.EACCES):
        # Before any program: bpf() itself was refused (libbpf's own advice
        # about RLIMIT_MEMLOCK is beside the point on kernels >= 5.11).
        return BpfPermissionError(err, "loading the BPF object", message=(
            f"loading the BPF object was refused: this process may not use bpf() "
            f"({strerror(err)})"))
    skip = ("failed to load object", "failed to load BPF skeleton")
    detail = next((ln for ln in reversed(messages)
                   if ("failed" in ln or "error" in ln.lower()) and not any(x in ln for x in skip)),
                  "")
    exc = from_errno(err, "loading the BPF object")
    if detail:
        exc.message = f"loading the BPF object failed: {detail.removeprefix('libbpf: ').strip()}"
    return exc


def _verifier_log(messages: list[str]) -> str:
    """The verifier's own words from libbpf's BEGIN/END PROG LOAD LOG block."""
    out: list[str] = []
    inside = False
    for line in messages:
        if "-- BEGIN PROG LOAD LOG --" in line:
            inside = True
            rest = line.split("-- BEGIN PROG LOAD LOG --", 1)[1]
            if "-- END PROG LOAD LOG --" in rest:
                out.append(rest.split("-- END PROG LOAD LOG --", 1)[0])
                inside = False
            else:
                out.append(rest)
            continue
        if inside:
            if "-- END PROG LOAD LOG --" in line:
                out.append(line.split("-- END PROG LOAD LOG --", 1)[0])
                inside = False
            else:
                out.append(line)
    return "\n".join(x.strip("\n") for x in out).strip()


def _eperm_hint(prog: ProgramInfo | None) -> str:
    if prog is not None and prog.kind in ("fentry", "fexit", "fmod_ret", "lsm", "fentry.s",
                                          "fexit.s", "lsm.s"):
        return (f"this kernel refuses {prog.kind} programs (trampolines unavailable or "
                "locked down); declare a kprobe or tracepoint alternative (fallback=...)")
    if os.geteuid() != 0:
        return "run as root, or grant CAP_BPF and CAP_PERFMON"
    return "the kernel refused the program (lockdown, or an LSM denies BPF)"
