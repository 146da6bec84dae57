"""A BPF object file opened through libbpf: programs, maps and global variables.

:class:`BpfObject` owns one ``struct bpf_object``.  Its life has steps:
open (``BpfObject(data)``) -> configure (program selection, ``.rodata``
knobs, map sizes) -> :meth:`BpfObject.load` -> attach (see :mod:`lcc.links`).
:meth:`BpfObject.close` releases it; :class:`lcc.ClbcBase` drives all of
this for the common case.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys

from . import _libbpf
from ._record import Record
from .btf import KIND_DATASEC, Btf, BtfType, Datasec
from .codecs import Codec, codec
from .errors import (BpfPermissionError, BtfError, ClosedError, LccError, ProgramLoadError,
                     from_errno, strerror)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

# enum bpf_map_type values used for the global data maps' detection and by maps.py
MAP_TYPE_ARRAY = 2

_LOG_SIZE = 256 << 10  # verifier log buffer; the kernel keeps the tail when it overflows


class Program:
    """One program of an object: its name, section and whether it will load."""

    def __init__(self, obj: "BpfObject", ptr: int) -> None:
        lb = _libbpf.lib()
        self._obj = obj
        self._ptr = ptr
        self.name: str = _libbpf.cstr(lb.bpf_program__name(ptr))
        self.section: str = _libbpf.cstr(lb.bpf_program__section_name(ptr))
        self._kind, _, self._target = self.section.partition("/")

    @property
    def ptr(self) -> int:
        self._obj._check_open()
        return self._ptr

    @property
    def autoload(self) -> bool:
        return bool(_libbpf.lib().bpf_program__autoload(self.ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        if self._obj.loaded:
            raise LccError(f"program '{self.name}': autoload can only change before load()")
        _libbpf.check(_libbpf.lib().bpf_program__set_autoload(self.ptr, bool(value)),
                      f"setting autoload of '{self.name}'")

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
        lb = _libbpf.lib()
        t = lb.bpf_program__type(self.ptr)
        if _libbpf.has("libbpf_bpf_prog_type_str"):
            return _libbpf.cstr(lb.libbpf_bpf_prog_type_str(t)) or str(t)
        return str(t)

    @property
    def kind(self) -> str:
        """The section's prefix: ``kprobe``, ``fentry``, ``tracepoint``, ``tp_btf``..."""
        return self._kind

    @property
    def target(self) -> str:
        """What the section says to attach to (``tcp_v4_connect``, ``sched/sched_switch``)."""
        return self._target

    def __repr__(self) -> str:
        return f"<Program {self.name} SEC({self.section!r})>"


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


class GlobalSection:
    """The global variables of one data section (``.rodata``, ``.bss``, ``.data``).

    Attribute access reads and writes variables by name.  Before load the
    values live in libbpf's copy that load() hands to the kernel; after load
    ``.bss`` and ``.data`` are read and written in the kernel's map memory
    (mmap), and ``.rodata`` is read-only.  Assigning a value the variable
    cannot hold raises the TypeError, ValueError or OverflowError of the
    codec, naming the variable and its type.
    """

    def __init__(self, obj: "BpfObject", map_ptr: int, type_id: int, section: str) -> None:
        # Straight into __dict__: attribute assignment sets variables
        self.__dict__.update(
            _obj=obj, _map=map_ptr, _section=section,
            _type_id=type_id,  # the section's BTF DATASEC
            # Read on first use, not at open: most tools touch few of their globals.
            _layout=None,  # name -> (offset, size, BTF type id)
            _codecs={},  # name -> (offset, Codec)
            _ints={},  # name -> (offset, size, signed), None for other types
            _live=None)

    @property
    def _vars(self) -> dict[str, tuple[int, int, int]]:
        if self._layout is None:
            object.__setattr__(self, "_layout", self._obj.btf.datasec_vars(self._type_id))
        return self._layout

    def _var(self, name: str) -> tuple[int, Codec]:
        """(offset, codec) of variable ``name``; raises KeyError if there is none."""
        got = self._codecs.get(name)
        if got is None:
            offset, _size, type_id = self._vars[name]
            got = self._codecs[name] = (offset, codec(self._obj.btf.type(type_id)))
        return got

    def _int_var(self, name: str) -> tuple[int, int, bool] | None:
        """(offset, size, signed) of an integer, bool or enum variable, None for
        other types; raises KeyError if there is no variable ``name``."""
        got = self._ints.get(name, self)  # self: not looked at yet (None is an answer)
        if got is not self:
            return got
        offset, size, type_id = self._vars[name]
        layout = self._obj.btf.int_layout(type_id)
        got = None if layout is None or layout[0] != size else (offset, size, layout[1])
        self._ints[name] = got
        return got

    def names(self) -> list[str]:
        return list(self._vars)

    def _memory(self, writing: bool) -> memoryview:
        obj: BpfObject = self._obj
        obj._check_open()
        if not obj.loaded:
            addr, size = _libbpf.map_initial_value(self._map)
            if not addr:
                raise LccError(f"section {self._section} has no data")
            return _libbpf.memory_view(addr, size)
        if self._live is None:
            object.__setattr__(self, "_live", obj._map_memory(self._map, self._section))
        if writing and self._section.startswith(".rodata"):
            raise LccError(f"{self._section} is read-only after load; set its variables before "
                           "load() (ClbcBase(..., rodata={...}) or load=False)")
        return self._live

    def _set_int_before_load(self, name: str, value: int) -> bool:
        """Write an int straight into libbpf's image of the section, the common
        case of a knob set before load; False when the codec has to do it
        (not an integer variable, or a value it cannot hold: the codec says why)."""
        iv = self._int_var(name)
        if iv is None:
            return False
        off, size, signed = iv
        try:
            data = value.to_bytes(size, sys.byteorder, signed=signed and value < 0)
        except OverflowError:
            return False
        self._obj._check_open()
        addr, total = _libbpf.map_initial_value(self._map)
        if not addr or off + size > total:
            return False
        _libbpf.write_memory(addr + off, data)
        return True

    def __getattr__(self, name: str) -> Any:
        try:
            off, c = self._var(name)
        except KeyError:
            raise AttributeError(f"{self._section} has no variable '{name}' "
                                 f"(it has: {', '.join(self._vars) or 'none'})") from None
        return c.decode(self._memory(False), off)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            if (isinstance(value, int) and not self._obj.loaded
                    and self._set_int_before_load(name, value)):
                return
            off, c = self._var(name)
        except KeyError:
            raise AttributeError(f"{self._section} has no variable '{name}' "
                                 f"(it has: {', '.join(self._vars) or 'none'})") from None
        mem = self._memory(True)
        try:
            data = c.encode(value)
        except (OverflowError, ValueError, TypeError) as e:
            # the built-in class (a UnicodeError, say, takes other arguments)
            cls = next(k for k in (OverflowError, ValueError, TypeError) if isinstance(e, k))
            raise cls(f"{self._section} variable '{name}' ({c.type}, {c.size} bytes) "
                      f"cannot hold {value!r}: {e}") from None
        mem[off:off + c.size] = data

    __getitem__ = __getattr__
    __setitem__ = __setattr__

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._vars}

    def __repr__(self) -> str:
        return f"<GlobalSection {self._section} {self.names()}>"


class BpfObject:
    """An opened BPF object file; owns the libbpf object until :meth:`close`.

    ``data`` is the ELF object.  ``btf_custom_path`` points libbpf at BTF for
    CO-RE relocations when the kernel has none of its own.
    Raises :class:`BpfError` when libbpf cannot parse the object.
    """

    def __init__(self, data: bytes, *, name: str | None = None,
                 btf_custom_path: str | None = None) -> None:
        self._data = bytes(data)  # libbpf keeps pointers into the buffer
        # libbpf loads without a log first and, when the kernel rejects a
        # program, loads it again with the verifier log going here.
        self._log = _libbpf.log_buffer(_LOG_SIZE)
        self._ptr = 0
        self.loaded = False
        self._btf_custom_path = btf_custom_path
        if btf_custom_path is not None and not os.path.isfile(btf_custom_path):
            raise BtfError(f"the BTF file {btf_custom_path} does not exist",
                           hint="give the path of the target kernel's BTF (a vmlinux ELF or a "
                                "raw .btf file), or btf='server' to fetch it")
        _libbpf.clear_messages()
        self._ptr = _libbpf.open_object(self._data, name=name, btf_custom_path=btf_custom_path,
                                        log_buf=self._log)
        self._mmaps: list[tuple[mmap.mmap, memoryview]] = []
        self._buffers: list[Any] = []  # native parts of ring/perf buffers on our maps
        self.name = _libbpf.cstr(_libbpf.lib().bpf_object__name(self._ptr))
        self.btf = Btf(_libbpf.lib().bpf_object__btf(self._ptr), owner=self)
        self.programs: dict[str, Program] = {}
        for p in _libbpf.iter_programs(self._ptr):
            prog = Program(self, p)
            self.programs[prog.name] = prog
        self._map_ptrs: dict[str, int] = {}
        # BTF key/value type ids as the object declares them: libbpf zeroes them
        # at load for map types the kernel takes without BTF (queue, stack,
        # perf event array...), but they still say how to decode the values.
        self._map_btf_ids: dict[str, tuple[int, int]] = {}
        lb = _libbpf.lib()
        for m in _libbpf.iter_maps(self._ptr):
            name = _libbpf.cstr(lb.bpf_map__name(m))
            self._map_ptrs[name] = m
            self._map_btf_ids[name] = (lb.bpf_map__btf_key_type_id(m),
                                       lb.bpf_map__btf_value_type_id(m))
        self._globals: dict[str, GlobalSection] = {}
        self._section_maps: dict[str, str] = {}  # ".bss" -> "<obj>.bss"
        self._collect_globals()

    # -- lifecycle ----------------------------------------------------------

    def _check_open(self) -> None:
        if not self._ptr:
            raise ClosedError("this BPF object is closed")

    @property
    def closed(self) -> bool:
        return not self._ptr

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
        for mm, view in self._mmaps:
            view.release()
            try:
                mm.close()
            except BufferError:
                pass  # a view made by the caller is still alive; the GC unmaps it
        self._mmaps.clear()
        if self._ptr:
            self.btf._detach()  # bpf_object__close frees the object's BTF
            _libbpf.lib().bpf_object__close(self._ptr)
            self._ptr = 0

    def load(self) -> None:
        """Create the maps and load the selected programs into the kernel.

        Raises :class:`ProgramLoadError` (with the verifier log) when the
        kernel rejects a program, :class:`BpfPermissionError` without
        privileges.
        """
        self._check_open()
        if self.loaded:
            return
        _libbpf.clear_messages()
        ret = _libbpf.lib().bpf_object__load(self._ptr)
        if ret < 0:
            raise self._load_error(-ret)
        self.loaded = True

    def _load_error(self, err: int) -> LccError:
        return load_error(err, _libbpf.recent_messages(clear=True),
                          self._log.value.decode("utf-8", "replace").strip(),
                          programs=self.programs, btf_custom_path=self._btf_custom_path)

    # -- programs -----------------------------------------------------------

    def select(self, which: Iterable[str] | Callable[[Program], bool]) -> None:
        """Load only the chosen programs: a list of names or a predicate on :class:`Program`."""
        if callable(which):
            keep = {p.name for p in self.programs.values() if which(p)}
        else:
            keep = set(which)
            unknown = keep - set(self.programs)
            if unknown:
                raise LccError(f"no program named {', '.join(sorted(unknown))} "
                               f"(the object has: {', '.join(self.programs)})")
        for p in self.programs.values():
            p.autoload = p.name in keep

    # -- maps -----------------------------------------------------------------

    def map_names(self) -> list[str]:
        return list(self._map_ptrs)

    def _map_name(self, name: str) -> str:
        """libbpf's name of a map; global data maps also answer to their section (``.bss``)."""
        if name in self._map_ptrs:
            return name
        if name in self._section_maps:
            return self._section_maps[name]
        user = [n for n in self._map_ptrs if n not in self._section_maps.values()]
        raise KeyError(f"no map named '{name}' (the object has: {', '.join(user) or 'none'})")

    def map_ptr(self, name: str) -> int:
        self._check_open()
        return self._map_ptrs[self._map_name(name)]

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

    def map_fd(self, name: str) -> int:
        fd = _libbpf.lib().bpf_map__fd(self.map_ptr(name))
        if fd < 0:
            raise LccError(f"map '{name}' has no fd yet: call load() first")
        return fd

    def resize_map(self, name: str, max_entries: int) -> None:
        """Set a map's max_entries before load."""
        if self.loaded:
            raise LccError(f"map '{name}' can only be resized before load()")
        _libbpf.check(_libbpf.lib().bpf_map__set_max_entries(self.map_ptr(name), max_entries),
                      f"resizing map '{name}'")

    def _map_memory(self, map_ptr: int, section: str) -> memoryview:
        fd = _libbpf.lib().bpf_map__fd(map_ptr)
        size = _libbpf.lib().bpf_map__value_size(map_ptr)
        length = max(mmap.PAGESIZE, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        prot = mmap.PROT_READ if section.startswith(".rodata") else mmap.PROT_READ | mmap.PROT_WRITE
        try:
            mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot)
        except OSError as e:
            raise from_errno(e.errno or errno.EINVAL, f"mapping {section} into memory",
                             hint="global data needs a kernel with mmap-able array maps (5.5+)")
        with memoryview(mm) as whole:
            view = whole[:size]
        self._mmaps.append((mm, view))
        return view

    # -- globals ----------------------------------------------------------------

    def _collect_globals(self) -> None:
        lb = _libbpf.lib()
        for name, m in self._map_ptrs.items():
            if not lb.bpf_map__is_internal(m):
                continue
            vid = self._map_btf_ids[name][1]
            if not vid:
                continue
            kind, section = self.btf.kind_and_name(vid)
            if kind == KIND_DATASEC:
                self._globals[section] = GlobalSection(self, m, vid, section)
                self._section_maps[section] = name

    def section(self, name: str) -> GlobalSection:
        """Globals of a data section by its ELF name (``.rodata``, ``.bss``, ``.data``, ...)."""
        try:
            return self._globals[name]
        except KeyError:
            raise LccError(f"the object has no {name} variables "
                           f"(sections with globals: {', '.join(self._globals) or 'none'})") \
                from None

    def global_sections(self) -> dict[str, GlobalSection]:
        return dict(self._globals)

    def iter_globals(self) -> Iterator[tuple[str, str, BtfType]]:
        """(section, name, type) of every global variable."""
        for secname, gs in self._globals.items():
            sec = self.btf.find(secname, KIND_DATASEC)
            if isinstance(sec, Datasec):
                for vs in sec.vars:
                    yield secname, vs.var.name, vs.var.type

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_BTF_FAILURES = ("failed to parse target BTF", "Error loading vmlinux BTF",
                 "failed to find valid kernel BTF", "failed to load vmlinux BTF")


def load_error(err: int, messages: list[str], log: str = "", *,
               programs: dict[str, Program] | None = None,
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


def _eperm_hint(prog: Program | None) -> str:
    if prog is not None and prog.kind in ("fentry", "fexit", "fmod_ret", "lsm", "fentry.s",
                                          "fexit.s", "lsm.s"):
        return (f"this kernel refuses {prog.kind} programs (trampolines unavailable or "
                "locked down); declare a kprobe or tracepoint alternative (fallback=...)")
    if os.geteuid() != 0:
        return "run as root, or grant CAP_BPF and CAP_PERFMON"
    return "the kernel refused the program (lockdown, or an LSM denies BPF)"
