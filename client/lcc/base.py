"""ClbcBase: a BPF tool as a Python class, as pyLCC users write them.

Subclass it, hand it ``.bpf.c`` source, and read ``self.maps[...]``::

    class Opens(ClbcBase):
        def __init__(self):
            super().__init__("opens")        # compiles and loads opens.bpf.c beside this file

The constructor runs the whole life cycle: compile (through
:func:`lcc.compile.build`: cache, compile service or local clang) -> open ->
configure -> load -> attach.  ``load=False`` stops after open so that a tool
can set ``.rodata`` knobs, choose programs or resize maps, then call
:meth:`load` and :meth:`attach_all` itself.  :meth:`close` releases buffers,
links and the object, in that order, once.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping

from . import links
from .compat import BccNames, PyLccNames, service_url
from .errors import ClosedError, LccError, NotSupported, ProgramLoadError, did_you_mean
from .links import Link, LinkGroup
from .globalvars import GlobalSection
from .maps import EventMap, Map, map_for
from .object import BpfObject, Program
from .spec import ObjectSpec, ProgramSpec

# Imported where used, not here, to keep a tool's start short: the compile
# pipeline (not needed with obj=; a cached tool reaches only lcc.compile.quick),
# the buffers (a tool may have none).
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Self, Sequence

    from . import features
    from .buffers import PollGroup

    ProgramSelector = Iterable[str] | Callable[[ProgramSpec], bool]


class Fallback:
    """Alternative programs for one job, best first.

    Each alternative is a program name or a sequence of names that work
    together (e.g. the fentry programs of a tool).  Before load, lcc keeps the
    first alternative whose attach points exist and whose program kind this
    kernel accepts, and turns autoload off for the others; if the kernel then
    rejects the chosen one, lcc chooses the next in the spec and loads again
    (every other choice made before load is kept).

    Only the programs a Fallback names are managed by it: every other program
    of the object loads as usual (use ``programs=`` to leave some out).
    ``chosen`` and ``skipped`` (alternative, reason) tell what happened.
    """

    def __init__(self, *alternatives: str | Sequence[str]) -> None:
        if not alternatives:
            raise ValueError("Fallback needs at least one alternative")
        self.alternatives: list[tuple[str, ...]] = [
            (a,) if isinstance(a, str) else tuple(a) for a in alternatives]
        self.chosen: tuple[str, ...] | None = None
        # Why earlier alternatives were passed over: probes and load rejections.
        self.skipped: list[tuple[tuple[str, ...], str]] = []
        self.rejected: dict[tuple[str, ...], str] = {}

    def names(self) -> set[str]:
        """Every program name the alternatives mention."""
        return {n for alt in self.alternatives for n in alt}

    def __repr__(self) -> str:
        return f"Fallback({', '.join('+'.join(a) for a in self.alternatives)})"


    def fresh(self) -> "Fallback":
        """A copy with nothing chosen or rejected (one per tool instance)."""
        return Fallback(*self.alternatives)


def _as_fallbacks(value: Any, *, copy: bool) -> list[Fallback]:
    """The fallbacks of one instance.  Those declared on the class are copied,
    so that one instance's choices and rejections never leak into the next;
    those passed to the constructor are used as they are (the caller may read
    ``chosen`` and ``skipped`` from them)."""
    if value is None:
        return []
    items = [value] if isinstance(value, Fallback) else list(value)
    if items and all(isinstance(x, Fallback) for x in items):
        return [x.fresh() if copy else x for x in items]
    return [Fallback(*items)]


class MapCollection(Mapping[str, "Any"]):
    """``self.maps``: live map objects by name, made on first access.

    The class of each (``HashMap``, ``RingBufMap``...) follows the map's type
    in the object, so to a type checker an item is ``Any``: a typed script
    narrows it with ``isinstance`` or an annotation where it cares.
    """

    def __init__(self, owner: "ClbcBase") -> None:
        self._owner = owner
        self._maps: dict[str, Map] = {}

    def __getitem__(self, name: str) -> Any:
        m = self._maps.get(name)
        if m is None:
            obj = self._owner._require_loaded()
            try:
                m = map_for(obj, name, on_buffer=self._owner._buffer_opened)
            except KeyError as e:
                raise KeyError(f"{e.args[0]}{did_you_mean(name, list(self))}") from None
            self._maps[name] = m
        elif self._owner.closed:
            raise ClosedError(f"{type(self._owner).__name__} is closed")
        return m

    def __iter__(self) -> Iterator[str]:
        obj = self._owner._require_loaded()
        return iter([n for n in obj.map_names() if not obj.map_spec(n).internal])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _opened(self) -> list[Map]:
        return list(self._maps.values())


class ClbcBase(PyLccNames, BccNames):
    """A BPF tool: compiled source, loaded programs, their maps, links and buffers.

    Arguments (the first eight as pyLCC has them):
      bpf: the tool's name; with ``bpf_str=None`` the source is ``<bpf>.bpf.c``
        in ``workPath``, else beside the subclass's module, else in the
        current directory (or a path to a ``.bpf.c`` file).
      bpf_str: the C source as a string.
      server: a compile service (default: ``LCC_SERVER``, else local clang):
        a URL, or as in pyLCC a bare host (``"buildhost"`` means
        ``http://buildhost:7655``) or ``host:port``.
      arch, ver: target architecture and kernel release (default, or ``""``:
        this machine).
      env: pyLCC-style ``"-DNAME=VALUE ..."`` definitions; ``defines`` is the dict form.
      attach: attach every loaded program by its SEC() name after load.
      workPath: pyLCC's working directory: where ``<bpf>.bpf.c`` and the
        local headers it includes are looked for first.
      load: load after opening (``False`` leaves configuration steps to the caller).
      rodata: ``{name: value}`` for ``const volatile`` globals, set before load.
      programs: which programs to load (names, or a predicate on :class:`ProgramSpec`).
      fallback: a :class:`Fallback` or list of them (or one list of alternatives).
      map_sizes: ``{map name: max_entries}`` set before load.
      btf: ``None`` (the kernel's BTF), ``"server"`` (ask the compile service
        for BTF tailored to this object), or a path to a BTF file.
      cache: use the local artifact cache.
      keep_types: ``struct``/``union`` types to keep in the object's BTF although
        the program uses them only for locals (an event struct filled on the
        stack), so that ``set_event_type`` finds them (see
        :func:`lcc.maps.eventtypes.keep_types_source`).
      obj: the bytes of an already compiled object (no compilation at all).
      probes: the :class:`lcc.features.Probes` that decide fallbacks (default:
        the process-wide ones; tests pass their own).
      min_btf: load a cached object with a minimal BTF made for it on this
        kernel (:mod:`lcc.compile.minbtf`) rather than the kernel's whole BTF,
        when ``btf`` is None; ``False`` (or ``LCC_MIN_BTF=0``) turns it off.

    Requires root or CAP_BPF+CAP_PERFMON to load.  Owns everything it creates
    until :meth:`close` (also through ``with``).
    """

    fallback: Any = None  # subclasses may declare their alternatives here

    def __init__(self, bpf: str, bpf_str: str | None = None, server: str | None = None,
                 arch: str | None = None, ver: str | None = None, env: str = "",
                 attach: bool | int = True, workPath: str | None = None,  # noqa: N803
                 *, load: bool = True,
                 defines: Mapping[str, str | int | None] | None = None,
                 rodata: Mapping[str, Any] | None = None,
                 programs: ProgramSelector | None = None,
                 fallback: Any = None,
                 map_sizes: Mapping[str, int] | None = None,
                 btf: str | None = None, cache: bool = True,
                 obj: bytes | None = None, probes: features.Probes | None = None,
                 keep_types: Iterable[str] = (), min_btf: bool = True) -> None:
        base = os.path.basename(bpf)
        self.name = base.removesuffix(".bpf.c").removesuffix(".c")
        self._owned = _Owned()
        self.links: list[Link | LinkGroup] = self._owned.links
        self._closed = False
        self.maps = MapCollection(self)
        self._fallbacks = (_as_fallbacks(fallback, copy=False) if fallback is not None
                           else _as_fallbacks(type(self).fallback, copy=True))
        self._programs_sel = programs
        self._probes = probes
        self._rodata = dict(rodata or {})
        self._map_sizes = dict(map_sizes or {})
        self._work_path = os.path.abspath(workPath) if workPath else None
        # The safety net: releases what close() would if the tool is collected
        # first.  It holds _owned only, never the tool or its callbacks.
        self._finalizer = weakref.finalize(self, self._owned.release)

        all_defines: dict[str, str | None] = {}
        if env:
            from .compile.defines import parse_env  # pyLCC's "-DA=1 -DB" strings
            all_defines = parse_env(env)
        for k, v in (defines or {}).items():
            all_defines[k] = None if v is None else str(v)
        self._min_btf: str | None = None
        self._quick: Any = None
        self._artifact: Any = None
        if obj is None:
            obj = self._compile(bpf, bpf_str, all_defines, server=service_url(server),
                                ver=ver or None, arch=arch or None, btf=btf, cache=cache,
                                keep_types=tuple(keep_types), min_btf=min_btf)
        else:
            self._btf_path = btf if btf and btf != "server" else None
        self._obj_bytes = obj
        try:
            self.open()
            if load:
                self.load()
                if attach:
                    self.attach_all()
        except BaseException:
            # Nothing half-made outlives a failed constructor (a traceback
            # would otherwise keep programs loaded and attached).
            self.close()
            raise

    # -- source -------------------------------------------------------------

    def _compile(self, bpf: str, bpf_str: str | None, defines: dict[str, str | None], *,
                 server: str | None, ver: str | None, arch: str | None, btf: str | None,
                 cache: bool, keep_types: tuple[str, ...], min_btf: bool) -> bytes:
        """The object's bytes, from the quick index (:mod:`lcc.compile.quick`) when it
        answers, else through :func:`lcc.compile.build`; sets ``_btf_path``."""
        from . import kernelcache
        from .compile import minbtf, quick
        main, text, base_dir = self._source(bpf, bpf_str)
        root = kernelcache.cache_root()
        qkey = None
        if cache is True and server is None and ver is None and arch is None and btf is None:
            qkey = quick.quick_key(main=main, text=text, base_dir=base_dir, defines=defines,
                                   keep_types=keep_types, root=root)
        hit = quick.lookup(root, qkey)
        use_min = btf is None and min_btf and cache is True and minbtf.enabled()
        if hit is not None:
            self._quick = hit
            self._btf_path = self._min_btf = (
                minbtf.for_object(root, hit.digest, hit.object_path) if use_min else None)
            return hit.object

        from .compile import build
        from .compile.bundle import Bundle
        from .compile.cache import default_dir
        if bpf_str:
            bundle = Bundle.from_string(bpf_str, name=main, base_dir=base_dir)
        else:
            bundle = Bundle.from_path(os.path.join(base_dir, main))
        if keep_types:
            from .maps.eventtypes import keep_types_source
            files = dict(bundle.files)
            files[bundle.main] += keep_types_source(keep_types)
            bundle = Bundle(bundle.main, files)
        self._artifact = art = build(bundle, defines=defines, server=server, kernel=ver,
                                    arch=arch, btf=btf == "server", cache=cache)
        if art.warnings:
            import warnings
            from .errors import CompileWarning
            for d in art.warnings:
                # Only the tool's own files: lcc's headers are not the user's to fix.
                if d.file in bundle.files:
                    warnings.warn(CompileWarning(d, bundle.files), stacklevel=3)
        self._btf_path = self._custom_btf(btf)
        same_root = art.key is not None and str(default_dir()) == root
        if same_root and art.origin == "local" and not art.warnings:
            quick.remember(root, qkey, art_key=art.key, digest=_sha256(art.object),
                           files=bundle.files, main=bundle.main, base_dir=base_dir)
        if use_min and same_root and self._btf_path is None and ver is None and arch is None:
            digest = _sha256(art.object)
            blob = os.path.join(root, "artifacts", "v1", "blobs", digest[:2], f"{digest}.o")
            if os.path.exists(blob):
                self._btf_path = self._min_btf = minbtf.for_object(root, digest, blob)
        return art.object

    def _source(self, bpf: str, bpf_str: str | None) -> tuple[str, str, str]:
        """(main file name, its text, the directory its local includes are found in)."""
        if bpf_str:
            return f"{self.name}.bpf.c", bpf_str, self._work_path or self._source_dir()
        # "tool" and "tool.bpf.c" name the same source; so does a path to any .c file
        path = bpf if bpf.endswith(".c") else f"{bpf}.bpf.c"
        if not os.path.isabs(path):
            dirs = [self._source_dir(), os.getcwd()]
            if self._work_path:
                dirs.insert(0, self._work_path)
            for d in dirs:
                cand = os.path.join(d, path)
                if os.path.exists(cand):
                    path = cand
                    break
        if not os.path.exists(path):
            raise LccError(f"no BPF source: {path} does not exist and bpf_str was not given")
        path = os.path.abspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise LccError(f"BPF source {os.path.basename(path)} is not UTF-8 text") from None
        except OSError as e:
            raise LccError(f"cannot read BPF source {path}: {e.strerror}") from None
        return os.path.basename(path), text, os.path.dirname(path)

    def _source_dir(self) -> str:
        """Where ``<name>.bpf.c`` is looked for: beside the subclass's module, or,
        for ClbcBase used directly, beside the script that called it."""
        import sys  # (not inspect: it costs milliseconds to import)
        here = os.path.dirname(os.path.abspath(__file__))
        module = sys.modules.get(type(self).__module__)
        f = getattr(module, "__file__", None)
        d = os.path.dirname(os.path.abspath(f)) if f else here
        if d != here:
            return d
        frame = sys._getframe()
        while frame is not None:
            f = os.path.abspath(frame.f_code.co_filename)
            if os.path.dirname(f) != here and os.path.exists(f):
                return os.path.dirname(f)
            frame = frame.f_back
        return os.getcwd()

    @property
    def artifact(self) -> Any:
        """What the compile pipeline returned (:class:`lcc.compile.Artifact`); None
        with ``obj=``.  After a quick cache hit it is made on first access."""
        if self._artifact is None and self._quick is not None:
            from .compile.artifact import Artifact
            h = self._quick
            self._artifact = Artifact(object=h.object, digest=h.digest, cached=True,
                                      origin="local", cache_hit=True, key=h.key)
        return self._artifact

    def _custom_btf(self, btf: str | None) -> str | None:
        if btf == "server":
            if self.artifact is None or not self.artifact.btf:
                raise LccError("btf='server' was asked for but the compile service sent no BTF")
            return self.artifact.btf_path
        return btf

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> ObjectSpec:
        """Open the compiled object as a spec and apply the constructor's configuration."""
        if self._owned.spec is not None:
            return self._owned.spec
        spec = self._owned.spec = ObjectSpec(self._obj_bytes, name=self.name,
                                             btf_custom_path=self._btf_path,
                                             btf_optional=self._min_btf is not None)
        if self._programs_sel is not None:
            spec.select(self._programs_sel)
        for name, n in self._map_sizes.items():
            spec.resize_map(name, n)
        if self._rodata:
            ro = spec.section(".rodata")
            for k, v in self._rodata.items():
                setattr(ro, k, v)
        self._apply_fallbacks()
        return spec

    @property
    def _obj(self) -> BpfObject | None:
        return self._owned.obj

    @property
    def spec(self) -> ObjectSpec:
        """The object's spec: programs, maps and the choices made before load."""
        if self._closed:
            raise ClosedError(f"{type(self).__name__} '{self.name}' is closed")
        if self._owned.spec is None:
            raise LccError("the object is not open")
        return self._owned.spec

    @property
    def obj(self) -> BpfObject | ObjectSpec:
        """The live object once loaded; before that, its spec (both list
        ``programs``, maps and globals; ``loaded`` tells them apart)."""
        spec = self.spec
        return self._owned.obj or spec

    @property
    def fallbacks(self) -> list[Fallback]:
        """This tool's fallbacks, with what each ``chosen`` and ``skipped``."""
        return list(self._fallbacks)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def _require_loaded(self) -> BpfObject:
        self.spec  # raises ClosedError after close()
        obj = self._owned.obj
        if obj is None:
            raise LccError(f"'{self.name}' is not loaded yet: call load() first")
        return obj

    def _apply_fallbacks(self) -> None:
        obj = self.spec
        if not self._fallbacks:
            return
        from . import features  # only for tools that declare fallbacks
        probes = self._probes or features.probes()
        for fb in self._fallbacks:
            missing = fb.names() - set(obj.programs)
            if missing:
                raise LccError(f"fallback names programs the object lacks: "
                               f"{', '.join(sorted(missing))}")
            fb.chosen = None
            fb.skipped = list(fb.rejected.items())
            for alt in fb.alternatives:
                if alt in fb.rejected:
                    continue
                # dict.fromkeys: one reason once, even when several programs share it
                reasons = list(dict.fromkeys(
                    r.reason for r in (probes.probe_section(obj.programs[n].section)
                                       for n in alt) if not r))
                if reasons:
                    fb.skipped.append((alt, "; ".join(reasons)))
                    continue
                fb.chosen = alt
                break
            if fb.chosen is None:
                why = "; ".join(f"{'+'.join(a)}: {r}" for a, r in fb.skipped)
                raise NotSupported("fallback", f"no alternative of {fb!r} works on this "
                                               f"kernel ({why})")
            for alt in fb.alternatives:
                for n in alt:
                    obj.programs[n].autoload = alt == fb.chosen

    def load(self) -> None:
        """Load the spec, falling back to the next alternative on rejection.

        Every choice made before (``rodata``, map sizes, program selection)
        is kept across the retries: they live in the spec.  Idempotent.
        """
        spec = self.spec
        if self._owned.obj is not None:
            return
        while True:
            try:
                self._owned.obj = spec.load()
                if spec.btf_dropped and spec.btf_dropped == self._min_btf:
                    from .compile import minbtf  # libbpf refused it: never again
                    minbtf.discard(self._min_btf)
                    self._min_btf = None
                return
            except ProgramLoadError as e:
                fb = next((f for f in self._fallbacks if f.chosen and e.program in f.chosen), None)
                if fb is None or fb.chosen is None:
                    raise
                fb.rejected[fb.chosen] = str(e)
                if all(a in fb.rejected for a in fb.alternatives):
                    raise
                self._apply_fallbacks()

    def add_fallback(self, *fallbacks: Fallback) -> None:
        """Add alternatives after open, before load (for programs known only once
        the object is open); they are applied at once, as ``fallback=`` is."""
        self.spec  # raises ClosedError after close()
        if self._owned.obj is not None:
            raise LccError("fallbacks can only be added before load()")
        self._fallbacks.extend(fallbacks)
        self._apply_fallbacks()

    def chosen(self) -> list[str]:
        """Names of the programs the fallbacks picked."""
        return [n for fb in self._fallbacks for n in (fb.chosen or ())]

    def attach_all(self) -> list[Link]:
        """Attach every loaded program by its SEC() name; returns the new links."""
        obj = self._require_loaded()
        new = []
        for prog in obj.programs.values():
            if prog.fd < 0 or links.needs_explicit_attach(prog):  # fd < 0: not loaded
                continue
            link = links.attach_auto(prog)
            self.links.append(link)
            new.append(link)
        return new

    def program(self, name: str) -> Program | ProgramSpec:
        """Program ``name``: live once loaded, its spec before."""
        try:
            return self.obj.programs[name]
        except KeyError:
            names = list(self.obj.programs)
            raise LccError(f"no program named '{name}' (the object has: "
                           f"{', '.join(names)}){did_you_mean(name, names)}") from None

    def __getitem__(self, name: str) -> Any:
        """``tool["counts"]`` is ``tool.maps["counts"]`` (as in BCC)."""
        return self.maps[name]

    def close(self) -> None:
        """Release buffers, then links, then the object. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- globals ----------------------------------------------------------------

    @property
    def rodata(self) -> GlobalSection:
        """``const volatile`` globals: writable before load (recorded in the spec),
        read-only after."""
        return self.obj.section(".rodata")

    @property
    def bss(self) -> GlobalSection:
        """Zero-initialised globals (``.bss``): read and written in the kernel's memory after load."""
        return self.obj.section(".bss")

    @property
    def data(self) -> GlobalSection:
        """Initialised globals (``.data``): read and written in the kernel's memory after load."""
        return self.obj.section(".data")

    # -- explicit attach ---------------------------------------------------------

    def _live_program(self, name: str) -> Program:
        """Loaded program ``name``, for attaching it."""
        self._require_loaded()
        return self.program(name)  # type: ignore[return-value]

    def _keep(self, link):
        self.links.append(link)
        return link

    def attach_tracepoint(self, prog: str, category: str, name: str) -> Link:
        """Attach ``prog`` to tracepoint ``category/name``; raises AttachPointMissing
        (with a did-you-mean) when this kernel has no such tracepoint."""
        return self._keep(links.attach_tracepoint(self._live_program(prog), category, name))

    def attach_raw_tracepoint(self, prog: str, name: str) -> Link:
        """Attach ``prog`` to raw tracepoint ``name`` (``sched_switch``)."""
        return self._keep(links.attach_raw_tracepoint(self._live_program(prog), name))

    def attach_kprobe(self, prog: str, func: str) -> Link:
        """Attach ``prog`` at the entry of kernel function ``func``; raises
        NotSupported on kernels without kprobes, AttachPointMissing for an unknown function."""
        return self._keep(links.attach_kprobe(self._live_program(prog), func))

    def attach_kretprobe(self, prog: str, func: str) -> Link:
        """Attach ``prog`` at the return of kernel function ``func`` (as :meth:`attach_kprobe`)."""
        return self._keep(links.attach_kprobe(self._live_program(prog), func, retprobe=True))

    def attach_uprobe(self, prog: str, binary: str, symbol: str | None = None, *,
                      offset: int = 0, pid: int = -1) -> Link:
        """Attach ``prog`` at ``symbol`` (plus ``offset``), or at ``offset``, in ``binary``
        (a path or a library name such as ``libc.so.6``), for every process or ``pid``."""
        return self._keep(links.attach_uprobe(self._live_program(prog), binary, symbol,
                                              offset=offset, pid=pid))

    def attach_uretprobe(self, prog: str, binary: str, symbol: str | None = None, *,
                         offset: int = 0, pid: int = -1) -> Link:
        """Attach ``prog`` at the return of ``symbol`` in ``binary`` (as :meth:`attach_uprobe`)."""
        return self._keep(links.attach_uprobe(self._live_program(prog), binary, symbol,
                                              offset=offset, pid=pid, retprobe=True))

    def attach_usdt(self, prog: str, binary: str, provider: str, name: str, *,
                    pid: int = -1, cookie: int = 0) -> Link:
        """Attach ``prog`` to the USDT probe ``provider:name`` of ``binary`` (see
        :func:`lcc.links.attach_usdt`), for ``SEC("usdt")`` programs."""
        return self._keep(links.attach_usdt(self._live_program(prog), binary, provider, name,
                                            pid=pid, cookie=cookie))

    def attach_perf_event(self, prog: str, *, event_type: int, config: int = 0,
                          sample_period: int = 0, sample_freq: int = 0, pid: int = -1,
                          cpus: Iterable[int] | None = None, group_fd: int = -1, flags: int = 0,
                          **attr: int) -> LinkGroup:
        """Attach ``prog`` to a perf event on every online CPU (or each of ``cpus``).

        ``attr`` takes any other ``struct perf_event_attr`` field by its kernel
        name (``wakeup_events=1``, ``inherit=True``, ``bp_type=``, ``bp_addr=``,
        ``bp_len=``...): see :func:`lcc.links.attach_perf_event`.
        """
        return self._keep(links.attach_perf_event(
            self._live_program(prog), event_type=event_type, config=config,
            sample_period=sample_period, sample_freq=sample_freq, pid=pid, cpus=cpus,
            group_fd=group_fd, flags=flags, **attr))

    def attach_xdp(self, prog: str, ifindex: int | str) -> Link:
        """Attach XDP program ``prog`` to a network interface (index or name)."""
        return self._keep(links.attach_xdp(self._live_program(prog), ifindex))

    def attach_cgroup(self, prog: str, cgroup: int | str) -> Link:
        """Attach ``prog`` to a cgroup (a path under /sys/fs/cgroup, or an open fd)."""
        return self._keep(links.attach_cgroup(self._live_program(prog), cgroup))

    def attach_iter(self, prog: str) -> Link:
        """Attach iterator program ``prog``; read its output through the returned link."""
        return self._keep(links.attach_iter(self._live_program(prog)))

    # -- buffers across maps (BCC style) ------------------------------------------

    _poll_group: PollGroup | None = None  # made on first use: see poll_group

    @property
    def poll_group(self) -> PollGroup:
        """One :class:`lcc.buffers.PollGroup` over every ring and perf buffer of the tool.

        Made on first use, after load; buffers opened with a callback join it
        as they open; it closes with the tool.  ``poll(timeout_ms)`` waits
        and delivers, ``consume()`` delivers what waits, and ``fileno()`` is
        readable while any buffer has events (``loop.add_reader`` in asyncio).
        :meth:`ring_buffer_poll` and :meth:`perf_buffer_poll` poll it too.
        """
        obj = self._require_loaded()
        g = self._poll_group
        if g is None:
            from .buffers import PollGroup
            g = self._poll_group = PollGroup(adopt=obj.adopt_buffer)
            for m in self.maps._opened():
                b = m.buffer if isinstance(m, EventMap) else None
                if b is not None and b.callback is not None and not b.closed:
                    g.add(b)
        return g

    def _buffer_opened(self, buf: Any) -> None:
        """An event map's buffer was given a callback: poll it with the others."""
        if self._poll_group is not None:
            self._poll_group.add(buf)

    def _poll(self, kind: str, timeout_ms: int) -> int:
        g = self.poll_group
        if not g.has(kind):
            raise LccError(f"no {kind} buffer is open")
        return g.poll(timeout_ms, kind)

    def ring_buffer_poll(self, timeout_ms: int = -1) -> int:
        """Wait for events on every open ring buffer; returns how many were delivered."""
        return self._poll("ring", timeout_ms)

    def ring_buffer_consume(self) -> int:
        """Deliver the events waiting in every open ring buffer, without blocking."""
        return self.poll_group.consume("ring")

    def perf_buffer_poll(self, timeout_ms: int = -1) -> int:
        """Wait for events on every open perf buffer once (BCC's semantics)."""
        return self._poll("perf", timeout_ms)


def _sha256(data: bytes) -> str:
    from .kernelcache import sha256
    return sha256(data).hexdigest()


class _Owned:
    """What a tool holds in the kernel and in memory, for close() and the finalizer.

    Its links, and its object, which also closes the native parts of the
    ring and perf buffers opened on its maps (libbpf consumers, mappings,
    epoll fds).  None of these reaches a Python callback: the callbacks live
    in the buffers' Python side, which only the tool's maps hold.  So a
    tool whose callback is one of its own methods (pyLCC's
    ``open_perf_buffer(self._cb)``) is still garbage collected, and the
    finalizer then releases all this.
    """

    __slots__ = ("links", "obj", "spec", "trace_pipe")

    def __init__(self) -> None:
        self.links: list[Link | LinkGroup] = []
        self.obj: BpfObject | None = None
        self.spec: ObjectSpec | None = None
        self.trace_pipe: Any = None  # a TracePipe, once trace_fields() opened it

    def release(self) -> None:
        """Close the trace pipe, free buffers, detach links, then free the object
        and the spec."""
        if self.trace_pipe is not None:
            self.trace_pipe.close()
            self.trace_pipe = None
        obj = self.obj
        if obj is not None:
            obj.close_buffers()
        for lk in reversed(self.links):
            try:
                lk.close()
            except Exception:  # noqa: BLE001 - keep releasing the rest
                pass
        self.links.clear()
        if obj is not None:
            obj.close()
        if self.spec is not None:
            self.spec.close()
