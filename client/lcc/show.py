"""Display of decoded BPF data: values, events, maps and histograms, as text or JSON lines.

What ``lcc run`` prints, usable by any tool:

- :func:`format_value` and :func:`plain`: one decoded BTF value as text
  (``{a=1 b=x}``) or as JSON-ready data;
- :func:`open_event_printers`: open every ring buffer and perf buffer of a
  loaded tool with a printer that writes each event as one decoded line
  (``map: field=value ...``) or one JSON object, decoded with the map's
  event type (declared with ``lbc_event``, or set with
  :meth:`~lcc.maps.EventMap.set_event_type`); events of a type unknown are
  printed as hex;
- :func:`dump_maps`: every map as bpftrace prints its maps: histogram-shaped
  maps as log2 histograms, other hash and array maps as ``key: value``
  lines (zero array entries left out), per-CPU values summed, then the
  ``.bss``/``.data`` globals.

A map is histogram-shaped when its values are integer counts and either its
name contains ``hist`` or ``slot`` and its keys are integers (the slot, as
``lbc_hist_add`` writes them), or its key is a struct with a ``slot`` member
(one histogram per value of the other members); or when its values are
structs with a ``slots`` array of counts, as libbpf-tools' ``struct hist``
(one histogram per key, labelled with the value's other members).  Stack-trace maps are not
printed by themselves; an event field or map key member whose name contains
``stack`` is looked up in the object's stack-trace map and printed
symbolized under its line.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

from .btf import Array, Enum, Int, Struct
from .codecs import StructValue
from .hist import Log2Hist, render_pylcc

__all__ = ["dump_maps", "format_value", "open_event_printers", "plain"]


# -- formatting values ------------------------------------------------------------

def plain(v: Any) -> Any:
    """A decoded BTF value as JSON-ready data (structs -> dicts, bytes -> hex)."""
    if isinstance(v, StructValue):
        return {k: plain(x) for k, x in zip(v._fields, v)}
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    return v


def format_value(v: Any) -> str:
    """One value as text: ``{a=1 b=x}`` for structs, ``[1, 2]`` for arrays, hex for bytes."""
    if isinstance(v, StructValue):
        return "{" + " ".join(f"{k}={format_value(x)}" for k, x in zip(v._fields, v)) + "}"
    if isinstance(v, dict):
        return "{" + " ".join(f"{k}={format_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, str):
        return v if v and not re.search(r"[\s{}=]", v) else json.dumps(v)
    return str(v)


def _fields_line(v: Any) -> str:
    """A struct event as ``a=1 b=x``; anything else as its value."""
    if isinstance(v, StructValue):
        return " ".join(f"{k}={format_value(x)}" for k, x in zip(v._fields, v))
    return format_value(v)


def _is_zero(v: Any) -> bool:
    if isinstance(v, (int, float)):
        return v == 0
    if isinstance(v, (bytes, bytearray)):
        return not any(v)
    if isinstance(v, str):
        return v == ""
    if isinstance(v, dict):
        return all(_is_zero(x) for x in v.values())
    if isinstance(v, (tuple, list)):
        return all(_is_zero(x) for x in v)
    return False


def _unit_of(name: str) -> str:
    """The value label of a histogram from its map name (``lat_us`` -> ``usecs``)."""
    for suffix, unit in (("ns", "nsecs"), ("us", "usecs"), ("ms", "msecs"),
                         ("bytes", "bytes"), ("kb", "kbytes")):
        if re.search(rf"(^|_){suffix}($|_)", name.lower()):
            return unit
    return "value"


# -- stacks -------------------------------------------------------------------------

class _Stacks:
    """Symbolizes stack ids found in events and map keys, through the object's stack maps."""

    def __init__(self, tool: Any) -> None:
        from .maps import StackTraceMap
        self._maps = [tool.maps[n] for n in tool.maps
                      if isinstance(tool.maps[n], StackTraceMap)]

    def __bool__(self) -> bool:
        return bool(self._maps)

    def _map_for(self, field: str) -> Any:
        for m in self._maps:  # kstack_id -> "kstacks", user_stack -> "user_stacks"...
            if m.name.rstrip("s").lower() in field.lower():
                return m
        return self._maps[0]

    def frames(self, field: str, stack_id: int) -> list[str]:
        """Frames of one stack (innermost first); user stacks as hex addresses."""
        user = field.lower().startswith("u") or "user" in field.lower()
        return self._map_for(field).frames(stack_id, user=user)

    def in_value(self, v: Any) -> dict[str, list[str]]:
        """Stacks referenced by the ``*stack*`` integer members of a struct value."""
        if not self._maps or not isinstance(v, StructValue):
            return {}
        return {f: self.frames(f, x) for f, x in zip(v._fields, v)
                if "stack" in f.lower() and isinstance(x, int)}


# -- maps ----------------------------------------------------------------------------

def _int_type(t: Any) -> bool:
    r = t.resolve() if t is not None else None
    return isinstance(r, (Int, Enum))


def _slots_member(t: Any) -> str | None:
    """The name of a struct's ``slots`` member when it is an array of integer
    counts (libbpf-tools' ``struct hist { __u32 slots[N]; char comm[16]; }``)."""
    r = t.resolve() if t is not None else None
    if not isinstance(r, Struct):
        return None
    for mb in r.members:
        a = mb.type.resolve()
        if mb.name == "slots" and isinstance(a, Array) and _int_type(a.elem):
            return mb.name
    return None


def _lbc_hist_base(m: Any) -> int | None:
    """2 or 10 for a map lbc.h's LBC_HIST2/LBC_HIST10 made (its ``lbc_hist`` member);
    None for any other map, or one not backed by an object's BTF."""
    obj = getattr(m, "_obj", None)
    return obj.btf.map_uint_field(m.name, "lbc_hist") if obj is not None else None


def _hist_shape(m: Any) -> str | None:
    """"hist" (slot key), "hists" (struct key with a slot member), "slots"
    (values that hold a ``slots`` array, one histogram per key) or None."""
    from .maps import KeyValueMap
    if not isinstance(m, KeyValueMap):
        return None
    if _slots_member(m.spec.value_type) is not None:
        return "slots"
    if not _int_type(m.spec.value_type):
        return None
    key = m.spec.key_type.resolve() if m.spec.key_type is not None else None
    if isinstance(key, Struct) and any(mb.name == "slot" and _int_type(mb.type)
                                       for mb in key.members):
        return "hists"
    if _int_type(key) and (re.search(r"hist|slot", m.name, re.I)
                           or _lbc_hist_base(m) is not None):
        return "hist"
    return None


def _sum_percpu(values: list[Any]) -> Any:
    """Per-CPU copies added up: numbers summed, structs member by member; for
    anything else (a name, say) the first non-empty copy."""
    if not values:
        return 0
    first = values[0]
    if isinstance(first, bool) or not isinstance(first, (int, float, tuple)):
        return next((v for v in values if not _is_zero(v)), first)
    if isinstance(first, (int, float)):
        return sum(values)
    if isinstance(first, StructValue):
        return {f: _sum_percpu([v[i] for v in values]) for i, f in enumerate(first._fields)}
    return tuple(_sum_percpu(list(col)) for col in zip(*values))


def _map_items(m: Any) -> list[tuple[Any, Any]]:
    """(key, value) pairs, per-CPU values summed."""
    from .maps import PerCpuMixin
    if isinstance(m, PerCpuMixin):
        return [(k, _sum_percpu(v)) for k, v in m.items()]
    return m.items()


def _group_key(key: StructValue) -> Any:
    rest = {f: v for f, v in zip(key._fields, key) if f != "slot"}
    return next(iter(rest.values())) if len(rest) == 1 else tuple(rest.items())


def _group_label(gk: Any) -> str:
    if isinstance(gk, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in gk):
        return ", ".join(f"{k}={format_value(v)}" for k, v in gk)
    return format_value(gk)


def _group_plain(gk: Any) -> Any:
    if isinstance(gk, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in gk):
        return {k: plain(v) for k, v in gk}
    return plain(gk)


def _dump_map(m: Any, stacks: _Stacks, out: IO[str], json_out: bool) -> None:
    from .maps import ArrayMap
    items = _map_items(m)
    shape = _hist_shape(m)
    if shape == "hist" and _lbc_hist_base(m) == 10:
        # LBC_HIST10: slot k counts [10^k, 10^(k+1)), drawn as pyLCC's showHist does
        counts = [0] * (max((int(k) for k, _ in items), default=-1) + 1)
        for k, v in items:
            counts[int(k)] = int(v)
        if json_out:
            out.write(json.dumps({"map": m.name, "kind": "hist10", "counts": counts}) + "\n")
        else:
            out.write(f"@{m.name}:\n")
            if any(counts):
                out.write(render_pylcc(counts, base=10) + "\n")
            out.write("\n")
        return
    if shape == "hist":
        try:
            h = Log2Hist.from_slots({int(k): int(v) for k, v in items})
        except ValueError:
            shape = None  # keys beyond the slot range: not a histogram after all
        else:
            if json_out:
                out.write(json.dumps({"map": m.name, "kind": "hist", "hist": h.to_dict()}) + "\n")
            else:
                out.write(f"@{m.name}:\n")
                if h:
                    out.write(h.render(_unit_of(m.name)) + "\n")
                out.write("\n")
            return
    if shape == "hists":
        try:
            groups = Log2Hist.grouped((_group_key(k), int(k.slot), int(v)) for k, v in items)
        except ValueError:
            shape = None
        else:
            order = sorted(groups.items(), key=lambda kv: -kv[1].total)
            if json_out:
                out.write(json.dumps({"map": m.name, "kind": "hists", "hists": [
                    {"key": _group_plain(gk), "hist": h.to_dict()} for gk, h in order]}) + "\n")
            else:
                for gk, h in order:
                    out.write(f"@{m.name}[{_group_label(gk)}]:\n{h.render(_unit_of(m.name))}\n\n")
                if not order:
                    out.write(f"@{m.name}:\n\n")
            return
    if shape == "slots":
        _dump_slot_values(m, items, out, json_out)
        return
    if isinstance(m, ArrayMap):
        items = [(k, v) for k, v in items if not _is_zero(v)]
    elif items and all(isinstance(v, (int, float)) for _, v in items):
        items.sort(key=lambda kv: kv[1])  # as bpftrace: the largest values last
    else:
        try:
            items.sort(key=lambda kv: kv[0])
        except TypeError:
            pass
    if json_out:
        entries = []
        for k, v in items:
            e = {"key": plain(k), "value": plain(v)}
            st = stacks.in_value(k)
            if st:
                e["stacks"] = st
            entries.append(e)
        out.write(json.dumps({"map": m.name, "kind": "kv", "entries": entries}) + "\n")
        return
    out.write(f"@{m.name}:\n")
    for k, v in items:
        out.write(f"  {format_value(k)}: {format_value(v)}\n")
        for frames in stacks.in_value(k).values():
            for fr in frames:
                out.write(f"      {fr}\n")
    out.write("\n")


def _dump_slot_values(m: Any, items: list[tuple[Any, Any]], out: IO[str],
                      json_out: bool) -> None:
    """One histogram per key from values holding a ``slots`` array, labelled with
    the key and the value's other members (``@hists[-1, comm=bash]``)."""
    hists = []
    for k, v in items:
        fields = v.to_dict() if isinstance(v, StructValue) else dict(v)
        try:
            h = Log2Hist.from_slots([int(c) for c in fields.pop("slots")])
        except ValueError:
            continue  # more slots than a log2 histogram has: not one after all
        if h:
            hists.append((k, fields, h))
    hists.sort(key=lambda e: -e[2].total)
    if json_out:
        out.write(json.dumps({"map": m.name, "kind": "hists", "hists": [
            {"key": plain(k), **({"value": plain(f)} if f else {}), "hist": h.to_dict()}
            for k, f, h in hists]}) + "\n")
        return
    for k, fields, h in hists:
        label = ", ".join([format_value(k), *(f"{n}={format_value(x)}" for n, x in fields.items()
                                             if not _is_zero(x))])
        out.write(f"@{m.name}[{label}]:\n{h.render(_unit_of(m.name))}\n\n")
    if not hists:
        out.write(f"@{m.name}:\n\n")


# Maps libbpf adds to an object for its own bookkeeping (usdt.bpf.h's specs).
_LIBBPF_MAPS = ("__bpf_usdt_",)


def dump_maps(tool: Any, out: IO[str], json_out: bool = False) -> None:
    """Print every key/value map of a loaded tool, then its .bss/.data globals."""
    from .maps import KeyValueMap
    stacks = _Stacks(tool)
    for name in tool.maps:
        if name.startswith(_LIBBPF_MAPS):
            continue
        m = tool.maps[name]
        if isinstance(m, KeyValueMap):
            _dump_map(m, stacks, out, json_out)
    for secname, sec in tool.obj.global_sections().items():
        if secname.startswith(".rodata") or secname.startswith(".kconfig"):
            continue
        values = {k: plain(v) for k, v in sec.to_dict().items()}
        if not values:
            continue
        if json_out:
            out.write(json.dumps({"globals": secname, "values": values}) + "\n")
        else:
            for k, v in values.items():
                out.write(f"{k}: {format_value(v)}\n")
            out.write("\n")


# -- events ---------------------------------------------------------------------------

class _EventPrinter:
    """The callback of one event map: a decoded line (or JSON object) per event.

    Writes only: the caller flushes ``out`` once per poll, so that a burst of
    events costs one write.  Events whose members are all integers and
    strings (most events) are formatted by one ``%`` format made from the
    first event's fields, with the same output as the general path.
    """

    def __init__(self, name: str, decoded: bool, stacks: _Stacks, out: IO[str],
                 json_out: bool) -> None:
        self.name, self.decoded, self.stacks = name, decoded, stacks
        self.out, self.json_out = out, json_out
        self.write = out.write
        self.count = 0
        self._fast: Any = None  # (format, string member positions), False: general path

    def __call__(self, event: Any) -> None:
        self.count += 1
        fast = self._fast
        if fast is None:
            fast = self._fast = self._plan(event)
        if fast:
            fmt, strs, esc = fast
            if strs:
                vals = list(event)
                for i in strs:
                    vals[i] = esc(vals[i])
                self.write(fmt % tuple(vals))
            else:
                self.write(fmt % tuple(event))
            return
        stacks = self.stacks.in_value(event) if self.decoded else {}
        if self.json_out:
            rec: dict[str, Any] = {"map": self.name}
            if self.decoded:
                rec["event"] = plain(event)
            else:
                rec["data"] = bytes(event).hex()
            if stacks:
                rec["stacks"] = stacks
            self.write(json.dumps(rec) + "\n")
        else:
            body = _fields_line(event) if self.decoded else bytes(event).hex()
            self.write(f"{self.name}: {body}\n")
            for frames in stacks.values():
                for fr in frames:
                    self.write(f"    {fr}\n")

    def _plan(self, event: Any) -> Any:
        """The fast path's (format, positions of str members, str formatter) for
        events shaped like ``event``, or False when it does not apply (members
        other than int and str, stack ids to symbolize, undecoded events)."""
        if not self.decoded or not isinstance(event, StructValue) or self.stacks.in_value(event):
            return False
        kinds = [type(x) for x in event]
        if any(k is not int and k is not str for k in kinds):
            return False
        names = event._fields
        strs = tuple(i for i, k in enumerate(kinds) if k is str)
        if self.json_out:
            from json.encoder import encode_basestring_ascii as esc  # what json.dumps uses
            body = ", ".join(f"{json.dumps(n)}: {'%s' if k is str else '%d'}"
                             for n, k in zip(names, kinds))
            fmt = f"{{{json.dumps('map')}: {json.dumps(self.name)}, \"event\": {{{body}}}}}\n"
        else:
            esc = format_value
            body = " ".join(f"{n}={'%s' if k is str else '%d'}" for n, k in zip(names, kinds))
            fmt = f"{self.name}: {body}\n"
        # Member and map names are C identifiers: no '%' to escape in the format.
        return fmt, strs, esc


def open_event_printers(tool: Any, out: IO[str], json_out: bool = False) -> list[Any]:
    """Open every ring and perf buffer of the loaded ``tool`` with a printer writing to
    ``out``; returns the opened buffers (poll or consume them; the tool closes them)."""
    from .maps import PerfEventArrayMap, RingBufMap
    stacks = _Stacks(tool)
    bufs = []
    for name in tool.maps:
        m = tool.maps[name]
        if isinstance(m, RingBufMap):
            pr = _EventPrinter(name, m.event_codec is not None, stacks, out, json_out)
            bufs.append(m.open_ring_buffer(pr, raw=m.event_codec is None))
        elif isinstance(m, PerfEventArrayMap):
            pr = _EventPrinter(name, m.event_codec is not None, stacks, out, json_out)
            bufs.append(m.open_perf_buffer(pr, raw=m.event_codec is None))
    return bufs
