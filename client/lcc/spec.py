"""An inert BPF object: what it holds, and every choice made before load.

:class:`ObjectSpec` is opened from an object's bytes.  It lists the
programs (:class:`ProgramSpec`) and maps (:class:`lcc.object.MapSpec`), and
records what is chosen before load: which programs load (``autoload``),
map sizes, and the values written to ``.rodata``/``.bss``/``.data``
variables.  :meth:`ObjectSpec.load` makes a live :class:`lcc.object.BpfObject`
from it.  A load that fails (a verifier rejection, a missing privilege)
leaves the spec as it was, so trying again is "change a choice, load
again" and keeps every other choice; loading twice gives two independent
objects.

The spec holds no kernel resource: libbpf parses the object into memory
(a staged ``struct bpf_object`` that receives the choices as they are
made, so the common single load costs one open); when a load has used it
up, the next one opens the bytes again and replays the recorded choices.
"""

from __future__ import annotations

import errno
import os

from . import _libbpf
from .errors import BpfError, BtfError, ClosedError, LccError
from .btf import KIND_DATASEC
from .globalvars import GlobalSection, GlobalsMixin
from .object import BpfObject, MapSpec, _Handle, _Maps, load_error, prog_type_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

    from .btf import Btf


#: Frames a stack-trace map left without a value size gets (libbpf-tools'
#: loaders use PERF_MAX_STACK_DEPTH, 127).
STACK_DEPTH = 127

# enum bpf_map_type
_PERF_EVENT_ARRAY, _STACK_TRACE, _CPUMAP, _RINGBUF = 4, 7, 16, 27
#: The max_entries lcc gives a map an object leaves at 0 for its C loader to
#: size at run time (libbpf-tools' cpudist, offcputime, profile...), by map
#: type: libbpf-tools' MAX_ENTRIES by default; one entry per possible CPU
#: ("cpus") for the per-CPU kinds; 256 KiB for ring buffers; libbpf-tools'
#: default stack storage for stack-trace maps.  Map types left out (task,
#: socket and inode storage, struct_ops...) keep their 0.
DEFAULT_MAX_ENTRIES: dict[int, int | str] = {
    1: 10240,                   # hash
    2: 10240,                   # array
    _PERF_EVENT_ARRAY: "cpus",
    5: 10240,                   # per-CPU hash
    6: 10240,                   # per-CPU array
    _STACK_TRACE: 1024,
    9: 10240,                   # LRU hash
    10: 10240,                  # LRU per-CPU hash
    11: 10240,                  # LPM trie
    _CPUMAP: "cpus",
    22: 10240,                  # queue
    23: 10240,                  # stack
    _RINGBUF: 256 * 1024,
}


class ProgramSpec:
    """One program of a spec: its name, section and whether it will load."""

    def __init__(self, spec: "ObjectSpec", name: str, section: str) -> None:
        self._spec = spec
        self.name = name
        self.section = section
        self.kind, _, self.target = section.partition("/")
        self._autoload: bool | None = None  # None: libbpf's default for the section

    @property
    def autoload(self) -> bool:
        """Whether the next load loads it (settable; recorded in the spec)."""
        if self._autoload is not None:
            return self._autoload
        return bool(_libbpf.lib().bpf_program__autoload(self._spec._program_ptr(self.name)))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        value = bool(value)
        self._spec._set_autoload(self.name, value)
        self._autoload = value

    @property
    def fd(self) -> int:
        """-1: a spec's programs are not in the kernel."""
        return -1

    @property
    def id(self) -> None:
        return None

    @property
    def prog_type(self) -> str:
        """The program type as libbpf names it (``tracepoint``, ``kprobe``, ...)."""
        return prog_type_name(self._spec._program_ptr(self.name))

    def __repr__(self) -> str:
        return f"<ProgramSpec {self.name} SEC({self.section!r})>"


class ObjectSpec(_Maps, GlobalsMixin):
    """A BPF object opened but not loaded, with the choices made before load.

    ``data`` is the ELF object.  ``btf_custom_path`` points libbpf at BTF
    for CO-RE relocations when the kernel has none of its own, or at a
    minimal BTF made for this object (:mod:`lcc.compile.minbtf`): with
    ``btf_optional``, it is only an optimisation, and a load that fails with
    it is tried once more with the kernel's own BTF (``btf_dropped`` then
    holds the path that was given up).  Raises
    :class:`BpfError` when libbpf cannot parse the object, :class:`BtfError`
    when ``btf_custom_path`` does not exist.  :meth:`close` frees the
    staged libbpf object (no kernel resource is held at any time).
    """

    loaded = False  # a live object says True

    def __init__(self, data: bytes, *, name: str | None = None,
                 btf_custom_path: str | None = None, btf_optional: bool = False) -> None:
        self._data = bytes(data)
        self._open_name = name
        self.btf_custom_path = btf_custom_path
        self.btf_optional = btf_optional
        self.btf_dropped: str | None = None
        if btf_custom_path is not None and not os.path.isfile(btf_custom_path):
            raise BtfError(f"the BTF file {btf_custom_path} does not exist",
                           hint="give the path of the target kernel's BTF (a vmlinux ELF or a "
                                "raw .btf file), or btf='server' to fetch it")
        self._closed = False
        # The recorded choices, replayed on every fresh open.
        self.map_sizes: dict[str, int] = {}
        self.value_sizes: dict[str, int] = {}
        self.values: dict[str, dict[int, bytes]] = {}  # section -> offset -> bytes
        self._handle: _Handle | None = _Handle(self._data, name=name,
                                               btf_custom_path=btf_custom_path)
        h = self._handle
        self.name = _libbpf.cstr(_libbpf.lib().bpf_object__name(h.ptr))
        self.programs: dict[str, ProgramSpec] = {
            n: ProgramSpec(self, n, _libbpf.cstr(_libbpf.lib().bpf_program__section_name(p)))
            for n, p in h.programs.items()}
        self._map_btf_ids, self._section_maps, self._globals = _read_layout(h, self)

    # -- the staged libbpf object ---------------------------------------------

    def _staged(self) -> _Handle:
        """The libbpf object the choices are applied to: opened now, with every
        recorded choice replayed, if a load used up the last one."""
        if self._closed:
            raise ClosedError("this object spec is closed")
        if self._handle is None:
            h = _Handle(self._data, name=self._open_name, btf_custom_path=self.btf_custom_path)
            try:
                self._replay(h)
            except BaseException:
                h.close()
                raise
            self._handle = h
        return self._handle

    def _replay(self, h: _Handle) -> None:
        lb = _libbpf.lib()
        for p in self.programs.values():
            if p._autoload is not None:
                _libbpf.check(lb.bpf_program__set_autoload(h.programs[p.name], p._autoload),
                              f"setting autoload of '{p.name}'")
        for name, n in self.map_sizes.items():
            _libbpf.check(lb.bpf_map__set_max_entries(h.maps[name], n), f"resizing map '{name}'")
        for name, n in self.value_sizes.items():
            _libbpf.check(lb.bpf_map__set_value_size(h.maps[name], n),
                          f"setting the value size of map '{name}'")
        for section, writes in self.values.items():
            addr, size = _libbpf.map_initial_value(h.maps[self._section_maps[section]])
            for off, data in writes.items():
                _write_image(addr, size, off, data, section)

    @property
    def elf(self) -> bytes:
        """The ELF object the spec was opened from."""
        return self._data

    @property
    def btf(self) -> Btf:  # type: ignore[override]
        """The object's BTF (types already read stay usable after close)."""
        return self._staged().btf

    def _program_ptr(self, name: str) -> int:
        return self._staged().programs[name]

    def _map_ptr_of(self, name: str) -> int:
        return self._staged().maps[name]

    def close(self) -> None:
        """Free the staged libbpf object; the spec cannot be loaded after. Idempotent."""
        self._closed = True
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "ObjectSpec":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- choices ----------------------------------------------------------------

    def _set_autoload(self, name: str, value: bool) -> None:
        _libbpf.check(_libbpf.lib().bpf_program__set_autoload(self._program_ptr(name), value),
                      f"setting autoload of '{name}'")

    def select(self, which: Iterable[str] | Callable[[ProgramSpec], bool]) -> None:
        """Load only the chosen programs: a list of names or a predicate on :class:`ProgramSpec`."""
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

    def resize_map(self, name: str, max_entries: int) -> None:
        """Set a map's max_entries for the loads to come."""
        real = self._map_name(name)
        _libbpf.check(_libbpf.lib().bpf_map__set_max_entries(self._map_ptr_of(real), max_entries),
                      f"resizing map '{name}'")
        self.map_sizes[real] = max_entries

    def unsized_maps(self) -> list[str]:
        """Maps whose max_entries is 0 (the object leaves them for its loader to
        size) and whose type needs entries: see :data:`DEFAULT_MAX_ENTRIES`."""
        lb = _libbpf.lib()
        out = []
        for name in self.map_names():
            m = self._map_ptr_of(name)
            if lb.bpf_map__max_entries(m) == 0 and lb.bpf_map__type(m) in DEFAULT_MAX_ENTRIES:
                out.append(name)
        return out

    def set_value_size(self, name: str, size: int) -> None:
        """Set a map's value size for the loads to come (a stack-trace map whose
        depth the object leaves to its loader)."""
        real = self._map_name(name)
        _libbpf.check(_libbpf.lib().bpf_map__set_value_size(self._map_ptr_of(real), size),
                      f"setting the value size of map '{name}'")
        self.value_sizes[real] = size

    def default_map_sizes(self) -> dict[str, int]:
        """Give each of :meth:`unsized_maps` its :data:`DEFAULT_MAX_ENTRIES` (recorded
        like :meth:`resize_map`); returns {map: max_entries} of what was set."""
        lb = _libbpf.lib()
        done = {}
        for name in self.unsized_maps():
            n = DEFAULT_MAX_ENTRIES[lb.bpf_map__type(self._map_ptr_of(name))]
            done[name] = _libbpf.num_possible_cpus() if n == "cpus" else int(n)
            self.resize_map(name, done[name])
        return done

    def default_value_sizes(self) -> dict[str, int]:
        """Give each stack-trace map whose value size is 0 room for
        :data:`STACK_DEPTH` frames, as libbpf-tools' loaders do; returns
        {map: value size} of what was set."""
        lb = _libbpf.lib()
        done = {}
        for name in self.map_names():
            m = self._map_ptr_of(name)
            if lb.bpf_map__type(m) == _STACK_TRACE and lb.bpf_map__value_size(m) == 0:
                done[name] = STACK_DEPTH * 8
                self.set_value_size(name, done[name])
        return done

    def map_fd(self, name: str) -> int:
        raise LccError(f"map '{name}' has no fd yet: call load() first")

    def _global_memory(self, section: str) -> memoryview:
        addr, size = _libbpf.map_initial_value(self._map_ptr_of(self._section_maps[section]))
        if not addr:
            raise LccError(f"section {section} has no data")
        return _libbpf.memory_view(addr, size)

    def _write_global(self, section: str, offset: int, data: bytes) -> None:
        addr, size = _libbpf.map_initial_value(self._map_ptr_of(self._section_maps[section]))
        _write_image(addr, size, offset, data, section)
        self.values.setdefault(section, {})[offset] = data

    # -- load -------------------------------------------------------------------

    def load(self) -> BpfObject:
        """Create the maps and load the selected programs into the kernel.

        Returns the live object, which owns them.  Raises
        :class:`ProgramLoadError` (with the verifier log) when the kernel
        rejects a program, :class:`BpfPermissionError` without privileges,
        :class:`BtfError` without usable kernel BTF; the spec is unchanged
        then, and can be loaded again.
        """
        try:
            return self._load()
        except LccError:
            path = self.btf_custom_path
            if not (self.btf_optional and path):
                raise
        # The optional BTF may be what failed: once more with the kernel's own.
        self.btf_custom_path = None
        try:
            obj = self._load()
        except BaseException:
            self.btf_custom_path = path  # not the cause: keep it for the next load
            raise
        self.btf_dropped = path
        return obj

    def _load(self) -> BpfObject:
        h = self._staged()
        self._check_sized(h)
        self._handle = None  # loaded or failed, libbpf cannot load this one again
        _libbpf.clear_messages()
        ret = _libbpf.lib().bpf_object__load(h.ptr)
        if ret < 0:
            err = load_error(-ret, _libbpf.recent_messages(clear=True), h.verifier_log(),
                             programs=self.programs, btf_custom_path=self.btf_custom_path)
            h.close()
            raise err
        try:
            return BpfObject(h, self)
        except BaseException:
            h.close()
            raise

    def _check_sized(self, h: _Handle) -> None:
        """Refuse, before libbpf's bare EINVAL, a load with maps left at 0 entries."""
        lb = _libbpf.lib()
        for n, m in h.maps.items():
            if lb.bpf_map__type(m) == _STACK_TRACE and lb.bpf_map__value_size(m) == 0:
                raise BpfError(errno.EINVAL, "loading the BPF object", message=(
                    f"stack-trace map '{n}' has value_size 0: the program leaves the stack "
                    "depth to its loader"), hint=(
                    f"set it before load: spec.set_value_size('{n}', 127 * 8), or "
                    "spec.default_value_sizes() (lcc run does)"))
        # libbpf sizes a perf event array left at 0 itself (one entry per CPU).
        unsized = [n for n in self.unsized_maps()
                   if lb.bpf_map__type(h.maps[n]) != _PERF_EVENT_ARRAY]
        if not unsized:
            return
        names = ", ".join(f"'{n}'" for n in unsized)
        sizes = ", ".join(f"'{n}': N" for n in unsized)
        raise BpfError(errno.EINVAL, "loading the BPF object", message=(
            f"map{'s' if len(unsized) > 1 else ''} {names} "
            f"{'have' if len(unsized) > 1 else 'has'} max_entries 0: the program leaves the "
            "size to its loader, and the kernel refuses an empty map"), hint=(
            f"set the size before load: ClbcBase(map_sizes={{{sizes}}}), spec.resize_map(), "
            f"spec.default_map_sizes(), or lcc run --map-size {unsized[0]}=N"))

    def __repr__(self) -> str:
        return f"<ObjectSpec {self.name} {len(self.programs)} programs>"


def _read_layout(h: _Handle, owner: ObjectSpec
                 ) -> tuple[dict[str, tuple[int, int]], dict[str, str], dict[str, GlobalSection]]:
    """From a freshly opened handle: the maps' BTF type ids (libbpf zeroes them at
    load for map types the kernel takes without BTF, such as queues, stacks and
    perf event arrays, but they still say how to decode the values), the data
    sections' maps, and a :class:`GlobalSection` per data section for ``owner``."""
    lb = _libbpf.lib()
    btf_ids = {name: (lb.bpf_map__btf_key_type_id(m), lb.bpf_map__btf_value_type_id(m))
               for name, m in h.maps.items()}
    section_maps: dict[str, str] = {}
    globals_: dict[str, GlobalSection] = {}
    for name, m in h.maps.items():
        vid = btf_ids[name][1]
        if not vid or not lb.bpf_map__is_internal(m):
            continue
        kind, section = h.btf.kind_and_name(vid)
        if kind == KIND_DATASEC:
            globals_[section] = GlobalSection(owner, vid, section)
            section_maps[section] = name
    return btf_ids, section_maps, globals_


def _write_image(addr: int, size: int, offset: int, data: bytes, section: str) -> None:
    """Write ``data`` into libbpf's image of a data section, bounds checked."""
    if not addr or offset + len(data) > size:
        raise LccError(f"section {section} has no room for {len(data)} bytes at {offset}")
    _libbpf.write_memory(addr + offset, data)


__all__ = ["GlobalSection", "MapSpec", "ObjectSpec", "ProgramSpec"]
