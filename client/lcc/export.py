"""Prometheus export of a loaded tool: its maps and event buffers as metrics.

Maps become metrics as Cloudflare's ebpf_exporter makes them, read when
Prometheus scrapes (no thread polls the maps):

- a hash or array map with integer values is a **counter** (a gauge if the
  config says so) named ``lcc_<tool>_<map>`` (``_total`` is appended in the
  exposition), one series per key;
- a struct value gives one metric per integer member,
  ``lcc_<tool>_<map>_<member>`` (members have their own units and meaning:
  separate metrics graph and alert better than a ``field`` label);
- a histogram-shaped map (the maps :mod:`lcc.show` draws as log2
  histograms: a ``slot`` key in a map named ``*hist*``/``*slot*``, or a
  struct key with a ``slot`` member) is a Prometheus **histogram**: slot
  *k* holds the values ``[2**k, 2**(k+1))``, so it ends in the bucket
  ``le=2**(k+1)``; buckets are cumulative up to the highest slot seen so far
  and ``+Inf``; ``_count`` is exact, ``_sum`` is approximate (each count at
  its slot's midpoint);
- per-CPU values are summed over the CPUs;
- every ring buffer and perf buffer gives ``lcc_<tool>_<map>_events`` (events
  delivered to user space) and, for perf buffers, ``..._lost_events`` (events
  the kernel dropped because the buffer was full).

Labels come from the key's BTF type: a struct key gives one label per member
(nested structs as ``outer_inner``), any other key one label named ``key``.
Each label is decoded by type and name (:data:`DECODERS`): integers as
numbers, ``char[N]`` as strings, enums by their names, 4- and 16-byte
members whose name contains ``addr`` as IPv4/IPv6 addresses, u64 members
named ``ip``/``pc``/``func``/``caller``/``ksym`` as kernel symbols.  Zero
entries of array maps are left out, as ``lcc run`` leaves them out.

:class:`ExportConfig` (from a TOML file, :meth:`ExportConfig.load`) renames
metrics, sets their type and help, renames labels, drops them (their series
are summed) or picks their decoder; without one every user map is exported
with the defaults above.  :class:`MapCollector` is a ``prometheus_client``
collector; :func:`serve` serves it over HTTP.  ``prometheus-client`` is the
``lcc[export]`` extra: it is imported only by :func:`serve` and
:meth:`MapCollector.collect`, which raise :class:`~lcc.errors.LccError`
with the install hint when it is missing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import netfmt
from .btf import Array, BtfType, Enum, Int, Struct, iter_members
from .errors import LccError
from .hist import LOG2_SLOTS
from .maps import ArrayMap, KeyValueMap, PerCpuMixin
from .show import _hist_shape, format_value

__all__ = [
    "DECODERS", "ExportConfig", "Label", "LabelConfig", "MapCollector", "MapConfig",
    "Server", "log2_buckets", "metric_name", "parse_listen", "serve",
]

log = logging.getLogger(__name__)

#: Metric types a map can be exported as ("none": not exported).
METRIC_TYPES = ("counter", "gauge", "histogram", "none")

INSTALL_HINT = "install it with: pip install 'lcc[export]' (or pip install prometheus-client)"


def _prometheus() -> Any:
    """The prometheus_client package, or an LccError saying how to get it."""
    try:
        import prometheus_client
    except ImportError:
        raise LccError("Prometheus export needs the prometheus-client package",
                       hint=INSTALL_HINT) from None
    return prometheus_client


# -- names ------------------------------------------------------------------------------

def _sanitize(text: str) -> str:
    """A valid Prometheus name part: other characters become ``_``."""
    s = re.sub(r"[^a-zA-Z0-9_]", "_", text)
    return s if s and not s[0].isdigit() else f"_{s}"


def metric_name(prefix: str, tool: str, map_name: str) -> str:
    """``<prefix>_<tool>_<map>``, each part made a valid Prometheus name."""
    return "_".join(_sanitize(p) for p in (prefix, tool, map_name) if p)


def _label_name(text: str) -> str:
    """A valid label name; ``__`` starts the names Prometheus keeps for itself."""
    name = _sanitize(text)
    return (name.lstrip("_") or "key") if name.startswith("__") else name


# -- label decoders -----------------------------------------------------------------------

def _ksym(v: Any) -> str:
    from .symbols import kernel_symbols
    sym = kernel_symbols().resolve(int(v))
    return sym.name if sym is not None else f"{int(v) & (1 << 64) - 1:#x}"


def _string(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")
    return v if isinstance(v, str) else format_value(v)


#: Label decoders by name, for the config's ``decoder``; ``enum`` needs the
#: key's BTF enum and is made per label.
DECODERS: dict[str, Callable[[Any], str]] = {
    "int": lambda v: str(int(v)),
    "hex": lambda v: f"{int(v):#x}",
    "string": _string,
    "ipv4": netfmt.fmt_ipv4,
    "ipv6": netfmt.fmt_ipv6,
    "ksym": _ksym,
    "value": format_value,
}

_ADDR = re.compile(r"addr", re.I)
_KSYM = re.compile(r"(^|_)(ip|pc|func|fn|caller|ksym|sym)$", re.I)


def _enum_decoder(t: Enum) -> Callable[[Any], str]:
    names = t.names
    return lambda v: names.get(int(v), str(int(v)))


def _is_char(t: BtfType) -> bool:
    r = t.resolve()
    return isinstance(r, Int) and r.nbytes == 1 and (r.is_char or r.name in ("char", "signed char"))


def _auto_decoder(name: str, t: BtfType) -> Callable[[Any], str]:
    """The decoder a member's type and name call for (see the module docstring)."""
    r = t.resolve()
    if isinstance(r, Enum):
        return _enum_decoder(r)
    if isinstance(r, Array) and _is_char(r.elem):
        return DECODERS["string"]
    size = r.size if isinstance(r, (Int, Array)) else 0
    if _ADDR.search(name) and size in (4, 16) and not (isinstance(r, Int) and r.signed):
        return DECODERS["ipv4" if size == 4 else "ipv6"]
    if isinstance(r, Int):
        if r.nbytes == 8 and _KSYM.search(name):
            return DECODERS["ksym"]
        return DECODERS["int"]
    return DECODERS["value"]  # other arrays print as [a, b], as lcc run prints them


def _decoder(spec: str, t: BtfType, where: str) -> Callable[[Any], str]:
    if spec == "enum":
        r = t.resolve()
        if not isinstance(r, Enum):
            raise LccError(f"{where}: decoder 'enum' needs an enum member, not {t}")
        return _enum_decoder(r)
    try:
        return DECODERS[spec]
    except KeyError:
        raise LccError(f"{where}: unknown decoder {spec!r}",
                       hint=f"use one of {', '.join(sorted([*DECODERS, 'enum']))}") from None


# -- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelConfig:
    """How one key member becomes a label: its ``name`` and ``decoder`` (None: the defaults)."""

    name: str | None = None
    decoder: str | None = None


@dataclass(frozen=True)
class MapConfig:
    """How one map is exported.

    ``name`` is the full metric name (None: ``<prefix>_<tool>_<map>``);
    ``type`` one of :data:`METRIC_TYPES` (None: histogram for
    histogram-shaped maps, else counter); ``value`` the one struct value
    member to export (None: every integer member); ``labels`` maps a key
    member (``key`` for a non-struct key) to its :class:`LabelConfig`, or to
    None to drop it (series that differ only in it are summed).
    """

    name: str | None = None
    type: str | None = None
    help: str | None = None
    value: str | None = None
    labels: Mapping[str, LabelConfig | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportConfig:
    """Which maps become which metrics.

    ``prefix`` and ``tool`` make the default names (``tool`` None: the
    tool's own name); ``defaults`` exports the maps ``maps`` does not name,
    with the defaults.  The TOML form::

        prefix = "lcc"
        defaults = true
        [maps.conns]
        name = "tcp_connects"
        type = "counter"
        help = "TCP connects by source address"
        [maps.conns.labels]
        saddr = { name = "src", decoder = "ipv4" }
        comm = "command"
        pid = false
    """

    prefix: str = "lcc"
    tool: str | None = None
    defaults: bool = True
    maps: Mapping[str, MapConfig] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> ExportConfig:
        """Read a TOML config; raises LccError naming the file and the bad entry."""
        import tomllib
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise LccError(f"cannot read the export config {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise LccError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(data, where=path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "export config") -> ExportConfig:
        """The config from parsed TOML; raises LccError for unknown keys or bad values."""
        _known(data, {"prefix", "tool", "defaults", "maps"}, where)
        maps = {}
        for name, m in dict(data.get("maps", {})).items():
            at = f"{where}: [maps.{name}]"
            if not isinstance(m, Mapping):
                raise LccError(f"{at} must be a table")
            _known(m, {"name", "type", "help", "value", "labels"}, at)
            if m.get("type") is not None and m["type"] not in METRIC_TYPES:
                raise LccError(f"{at}: unknown type {m['type']!r}",
                               hint=f"use one of {', '.join(METRIC_TYPES)}")
            labels: dict[str, LabelConfig | None] = {}
            for member, lab in dict(m.get("labels", {})).items():
                if lab is False:
                    labels[member] = None
                elif isinstance(lab, str):
                    labels[member] = LabelConfig(name=lab)
                elif isinstance(lab, Mapping):
                    _known(lab, {"name", "decoder"}, f"{at}.labels.{member}")
                    labels[member] = LabelConfig(lab.get("name"), lab.get("decoder"))
                else:
                    raise LccError(f"{at}: label {member!r} must be a name, a table "
                                   "{name=..., decoder=...} or false")
            maps[name] = MapConfig(m.get("name"), m.get("type"), m.get("help"),
                                   m.get("value"), labels)
        return cls(prefix=str(data.get("prefix", "lcc")), tool=data.get("tool"),
                   defaults=bool(data.get("defaults", True)), maps=maps)


def _known(table: Mapping[str, Any], keys: set[str], where: str) -> None:
    extra = sorted(set(table) - keys)
    if extra:
        raise LccError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} "
                       f"{', '.join(extra)}", hint=f"known: {', '.join(sorted(keys))}")


# -- labels and values from BTF ----------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    """One label: read ``path`` (member names) from a decoded key, then ``decode`` it."""

    name: str
    path: tuple[str, ...]
    decode: Callable[[Any], str]

    def value(self, key: Any) -> str:
        v = _read(key, self.path)
        try:
            return self.decode(v)
        except (TypeError, ValueError, OverflowError, LccError):
            # not what the decoder expected, or no kallsyms: show it as lcc run would
            return format_value(v)


def _leaves(t: BtfType | None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                              BtfType]]:
    """(member path, type) of every non-struct member, nested structs walked."""
    if t is None:
        return
    if isinstance(t.resolve(), Struct):
        for name, mt, _off in iter_members(t):
            yield from _leaves(mt, (*path, name))
    else:
        yield path, t


def key_labels(key_type: BtfType | None, conf: MapConfig = MapConfig(), *,
               skip: Iterable[str] = (), where: str = "map") -> list[Label]:
    """The labels of a key type: one per member of a struct (``skip``: members left
    out, like a histogram's ``slot``), else one named ``key``; ``conf`` renames,
    redecodes or drops them.  Raises LccError when ``conf`` names a member the key
    does not have."""
    leaves = [(p, t) for p, t in _leaves(key_type) if p[:1] not in [(s,) for s in skip]]
    known = {"_".join(p) or "key" for p, _ in leaves}
    unknown = sorted(set(conf.labels) - known)
    if unknown:
        raise LccError(f"{where}: the key has no member {', '.join(unknown)}",
                       hint=f"its members: {', '.join(sorted(known))}")
    labels = []
    for path, t in leaves:
        member = "_".join(path) or "key"
        lc = conf.labels.get(member, LabelConfig())
        if lc is None:
            continue
        decode = (_decoder(lc.decoder, t, f"{where}: label {member!r}") if lc.decoder
                  else _auto_decoder(path[-1] if path else member, t))
        labels.append(Label(_label_name(lc.name or member), path, decode))
    return labels


def _int_leaves(t: BtfType | None) -> list[tuple[str, ...]]:
    return [p for p, lt in _leaves(t) if isinstance(lt.resolve(), (Int, Enum))]


def _read(v: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        v = v[p] if isinstance(v, Mapping) else getattr(v, p)
    return v


def map_items(m: Any) -> list[tuple[Any, Any]]:
    """(key, value) pairs of a key/value map, per-CPU values summed and zero array
    entries left out."""
    items = list(m.sums().items()) if isinstance(m, PerCpuMixin) else m.items()
    if isinstance(m, ArrayMap):
        items = [(k, v) for k, v in items if not _all_zero(v)]
    return items


def _all_zero(v: Any) -> bool:
    if isinstance(v, (int, float)):
        return v == 0
    if isinstance(v, Mapping):
        return all(_all_zero(x) for x in v.values())
    if isinstance(v, tuple):
        return all(_all_zero(x) for x in v)
    return False


# -- histograms ------------------------------------------------------------------------------

def _slot_mid(slot: int) -> float:
    """The midpoint of slot ``slot``'s values: 0.5 for {0, 1}, else of [2**k, 2**(k+1))."""
    return 0.5 if slot == 0 else 1.5 * 2 ** slot - 0.5


def log2_buckets(counts: Mapping[int, int], top: int | None = None
                 ) -> tuple[list[tuple[str, int]], int, float]:
    """A log2 histogram (slot -> count) as Prometheus buckets.

    Returns ``(buckets, count, sum)``: ``buckets`` are cumulative
    ``(le, count)`` pairs, ``le = 2**(k+1)`` for slots 0..``top`` (default: the
    highest non-empty slot), then ``("+Inf", count)``; ``sum`` is approximate
    (each count at its slot's midpoint).  Raises ValueError for a slot outside
    0..63 or a negative count.
    """
    for s, c in counts.items():
        if not 0 <= s < LOG2_SLOTS or c < 0:
            raise ValueError(f"not a log2 histogram: slot {s} count {c}")
    used = [s for s, c in counts.items() if c]
    top = max(used, default=0) if top is None else top
    buckets, acc = [], 0
    for s in range(top + 1):
        acc += counts.get(s, 0)
        buckets.append((str(2 ** (s + 1)), acc))
    total = sum(counts.values())
    buckets.append(("+Inf", total))
    return buckets, total, float(sum(c * _slot_mid(s) for s, c in counts.items()))


# -- the collector ------------------------------------------------------------------------------

@dataclass
class _Plan:
    """What one map exports, worked out once from its BTF."""

    map: Any
    kind: str  # "counter", "gauge", "histogram"
    name: str
    help: str
    labels: list[Label]
    values: list[tuple[str, tuple[str, ...], str]]  # (metric name, member path, help)
    slot: tuple[str, ...] = ()  # histograms: where the slot is in the key
    top: int = 0  # histograms: the highest slot exported so far


class MapCollector:
    """A ``prometheus_client`` collector of a tool's maps and event buffers.

    ``maps``: name -> live map (``tool.maps``); ``buffers``: the opened ring
    and perf buffers, whose ``delivered`` (and ``lost``) counts are exported;
    ``tool``: the name in default metric names.  The plan (which map gives
    which metric, with which labels) is made here from BTF; :meth:`collect`
    reads the maps at each scrape.  Raises LccError when ``config`` names a
    map or a member that does not exist.  Reads from several threads are safe
    (each scrape makes its own lookups); the maps must stay open while it is
    served.
    """

    def __init__(self, maps: Mapping[str, Any], tool: str,
                 config: ExportConfig | None = None, buffers: Iterable[Any] = ()) -> None:
        self.config = config if config is not None else ExportConfig()
        self.tool = self.config.tool or tool
        self.buffers = list(buffers)
        missing = sorted(set(self.config.maps) - set(maps))
        if missing:
            raise LccError(f"the export config names no map of '{self.tool}': "
                           f"{', '.join(missing)}", hint=f"its maps: {', '.join(sorted(maps))}")
        self.plans: list[_Plan] = []
        for name in maps:
            conf = self.config.maps.get(name)
            if conf is None and not self.config.defaults:
                continue
            plan = self._plan(maps[name], conf or MapConfig())
            if plan is not None:
                self.plans.append(plan)

    def _name(self, map_name: str) -> str:
        return metric_name(self.config.prefix, self.tool, map_name)

    def _plan(self, m: Any, conf: MapConfig) -> _Plan | None:
        if conf.type == "none" or not isinstance(m, KeyValueMap) \
                or getattr(m.spec, "internal", False):
            return None
        where = f"map '{m.name}'"
        base = conf.name or self._name(m.name)
        shape = _hist_shape(m)
        kind = conf.type or ("histogram" if shape else "counter")
        if kind == "histogram":
            if shape is None:
                raise LccError(f"{where} is not a log2 histogram",
                               hint="its key must be a slot (map named *hist* or *slot*) "
                                    "or a struct with a 'slot' member; values integers")
            labels = key_labels(m.spec.key_type, conf, skip=("slot",), where=where) \
                if shape == "hists" else []
            return _Plan(m, kind, base, conf.help or f"log2 histogram of map {m.name}",
                         labels, [], ("slot",) if shape == "hists" else ())
        ints = _int_leaves(m.spec.value_type)
        help_ = conf.help or f"map {m.name}"
        if conf.value is not None:
            ints = [p for p in ints if "_".join(p) == conf.value]
            if not ints:
                raise LccError(f"{where}: the value has no integer member {conf.value!r}")
            values = [(base, ints[0], help_)]
        elif ints == [()]:
            values = [(base, (), help_)]
        else:
            values = [(f"{base}_{_sanitize('_'.join(p))}", p, f"{help_}, member {'.'.join(p)}")
                      for p in ints]
        if not values:
            log.debug("%s: no integer value to export", where)
            return None
        labels = key_labels(m.spec.key_type, conf, where=where)
        return _Plan(m, kind, base, help_, labels, values)

    # -- scrape time ------------------------------------------------------------------

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration (the names come from the maps)

    def collect(self) -> Iterator[Any]:
        """The metric families as they are now: one read of every exported map."""
        _prometheus()
        from prometheus_client import core as pc
        for plan in self.plans:
            try:
                items = map_items(plan.map)
            except LccError as e:
                log.warning("map '%s' not exported this time: %s", plan.map.name, e)
                continue
            if plan.kind == "histogram":
                yield from self._histogram(pc, plan, items)
            else:
                yield from self._scalars(pc, plan, items)
        for buf in self.buffers:
            name = self._name(buf.name)
            fam = pc.CounterMetricFamily(f"{name}_events",
                                         f"events of {buf.name} delivered to user space")
            fam.add_metric([], buf.delivered)
            yield fam
            if hasattr(buf, "lost"):
                fam = pc.CounterMetricFamily(f"{name}_lost_events",
                                             f"events of {buf.name} the kernel dropped "
                                             "(buffer full)")
                fam.add_metric([], buf.lost)
                yield fam

    def _scalars(self, pc: Any, plan: _Plan, items: list[tuple[Any, Any]]) -> Iterator[Any]:
        cls = pc.CounterMetricFamily if plan.kind == "counter" else pc.GaugeMetricFamily
        names = [lb.name for lb in plan.labels]
        for metric, path, help_ in plan.values:
            series: dict[tuple[str, ...], float] = {}
            for k, v in items:
                labels = tuple(lb.value(k) for lb in plan.labels)
                series[labels] = series.get(labels, 0) + _read(v, path)
            fam = cls(metric, help_, labels=names)
            for labels, value in series.items():
                fam.add_metric(list(labels), value)
            yield fam

    def _histogram(self, pc: Any, plan: _Plan, items: list[tuple[Any, Any]]) -> Iterator[Any]:
        groups: dict[tuple[str, ...], dict[int, int]] = {}
        for k, v in items:
            slot = int(_read(k, plan.slot)) if plan.slot else int(k)
            labels = tuple(lb.value(k) for lb in plan.labels)
            g = groups.setdefault(labels, {})
            g[slot] = g.get(slot, 0) + int(v)
        for counts in groups.values():
            used = [s for s, c in counts.items() if c]
            # Buckets only grow: a bucket that vanished would break rate() over it.
            plan.top = max(plan.top, *used) if used else plan.top
        fam = pc.HistogramMetricFamily(plan.name, plan.help,
                                       labels=[lb.name for lb in plan.labels])
        for labels, counts in groups.items():
            try:
                buckets, _count, total = log2_buckets(counts, plan.top)
            except ValueError as e:
                log.warning("map '%s' not exported this time: %s", plan.map.name, e)
                return
            fam.add_metric(list(labels), buckets, total)
        yield fam


# -- serving ---------------------------------------------------------------------------------

def parse_listen(addr: str, default_port: int = 9435) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (all addresses) or ``PORT`` as (host, port)."""
    text = addr.strip()
    host, port = "", text
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    elif not text.isdigit():
        host, port = text, ""
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise LccError(f"bad listen address {addr!r}",
                       hint="give HOST:PORT, [IPV6]:PORT, :PORT or PORT") from None
    if not 0 <= p < 65536:
        raise LccError(f"bad port in listen address {addr!r}")
    return host or "0.0.0.0", p


class Server:
    """The HTTP server of a collector's ``/metrics``; :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: Any) -> None:
        self._httpd, self._thread = httpd, thread

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it listens on (the port chosen when 0 was asked)."""
        return self._httpd.server_address[:2]

    def close(self) -> None:
        """Stop serving and wait for the serving thread. Idempotent."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None


def serve(collector: MapCollector, listen: str = "127.0.0.1:9435") -> Server:
    """Serve ``collector`` at ``http://<listen>/metrics`` from a daemon thread.

    Returns the :class:`Server` (close it before the tool).  Raises LccError
    when prometheus-client is missing or the address cannot be bound.
    """
    prom = _prometheus()
    host, port = parse_listen(listen)
    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        started = prom.start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise LccError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                       hint="choose another address with --listen") from None
    if not isinstance(started, tuple):  # prometheus-client before 0.17 returned nothing
        raise LccError("prometheus-client is too old to stop its server",
                       hint="pip install 'prometheus-client>=0.17'")
    return Server(*started)
