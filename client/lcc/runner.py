"""``lcc run``: load any BPF program, print its events as they come and its maps at exit.

:func:`run` compiles and loads a ``.bpf.c`` file (or a compiled ``.o``)
with :class:`lcc.ClbcBase` and attaches its programs by their SEC() names.
Programs this kernel cannot run (a kprobe without kprobes, an fentry that
the kernel refuses, a missing tracepoint) are skipped with a note, so a
tool's alternatives all load where they can; if none is left, it fails with
:class:`~lcc.errors.NotSupported`.  Then it

- prints each event of every ring buffer and perf buffer as one decoded line
  (``map: field=value ...``) or one JSON object; events of maps declared
  without ``lbc_event`` are printed as hex;
- at exit (duration over, Ctrl-C or SIGTERM) prints every map as bpftrace
  prints its maps: histogram-shaped maps as log2 histograms, other hash and
  array maps as ``key: value`` lines (zero array entries left out), per-CPU
  values summed, then the ``.bss``/``.data`` globals.

A map is histogram-shaped when its values are integer counts and either its
name contains ``hist`` or ``slot`` and its keys are integers (the slot, as
``lbc_hist_add`` writes them), or its key is a struct with a ``slot`` member
(one histogram per value of the other members).  Stack-trace maps are not
printed by themselves; an event field or map key member whose name contains
``stack`` is looked up in the object's stack-trace map and printed
symbolized under its line.

The loop (:func:`until_stopped`) stops on a duration, on Ctrl-C, SIGTERM or
SIGHUP, or on the caller's own condition; signals only set a flag
(:class:`StopSignals`), so no event is lost or printed by halves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import signal
import sys
import time
from typing import IO, Any, Callable, Mapping, Sequence

from .btf import Enum, Int, Struct, StructValue
from .errors import LccError
from .hist import Log2Hist

__all__ = ["StopSignals", "add_parser", "dump_maps", "main", "register", "run",
           "until_stopped"]


# -- stopping -------------------------------------------------------------------

class StopSignals:
    """While active, Ctrl-C, SIGTERM and SIGHUP set :attr:`signal` instead of killing.

    Nothing is raised from the handler, so an event being printed is never
    cut in half or lost; a blocking poll returns early (EINTR) or at its
    timeout, and the loop sees the flag.  Only the main thread may install
    handlers; elsewhere the block runs with the handlers it had.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __enter__(self) -> "StopSignals":
        try:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old.clear()


def until_stopped(wait: Callable[[float], Any], *, duration: float | None = None,
                  interval: float | None = None,
                  on_interval: Callable[[], None] | None = None,
                  stop: StopSignals | None = None, tick: float = 0.25) -> str:
    """Call ``wait(timeout_s)`` until it is time to stop; return why.

    ``wait`` blocks at most ``timeout_s`` seconds (polling buffers, say); if
    it returns ``True`` the loop ends with ``"done"``.  The loop also ends
    when ``duration`` seconds have passed (``"duration"``) or on Ctrl-C,
    SIGTERM or SIGHUP (``"signal"``; pass an active ``stop`` to catch the
    signals that arrive before the loop starts).  Every ``interval``
    seconds ``on_interval()`` is called.  Exceptions from ``wait`` propagate.
    """
    with contextlib.ExitStack() as stack:
        if stop is None:
            stop = stack.enter_context(StopSignals())
        now = time.monotonic()
        deadline = now + duration if duration else None
        next_tick = now + interval if interval else None
        while True:
            if stop.signal is not None:
                return "signal"
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "duration"
            if next_tick is not None and now >= next_tick:
                if on_interval is not None:
                    on_interval()
                next_tick += interval  # type: ignore[operator]
            limits = [tick]
            if deadline is not None:
                limits.append(deadline - now)
            if next_tick is not None:
                limits.append(next_tick - now)
            if wait(max(0.0, min(limits))) is True:
                return "done"


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


def _hist_shape(m: Any) -> str | None:
    """"hist" (slot key), "hists" (struct key with a slot member) or None."""
    from .maps import KeyValueMap
    if not isinstance(m, KeyValueMap) or not _int_type(m.spec.value_type):
        return None
    key = m.spec.key_type.resolve() if m.spec.key_type is not None else None
    if isinstance(key, Struct) and any(mb.name == "slot" and _int_type(mb.type)
                                       for mb in key.members):
        return "hists"
    if _int_type(key) and re.search(r"hist|slot", m.name, re.I):
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


def dump_maps(tool: Any, out: IO[str], json_out: bool = False) -> None:
    """Print every key/value map of a loaded tool, then its .bss/.data globals."""
    from .maps import KeyValueMap
    stacks = _Stacks(tool)
    for name in tool.maps:
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
    """The callback of one event map: a decoded line (or JSON object) per event."""

    def __init__(self, name: str, decoded: bool, stacks: _Stacks, out: IO[str],
                 json_out: bool) -> None:
        self.name, self.decoded, self.stacks = name, decoded, stacks
        self.out, self.json_out = out, json_out
        self.count = 0

    def __call__(self, event: Any) -> None:
        self.count += 1
        stacks = self.stacks.in_value(event) if self.decoded else {}
        if self.json_out:
            rec: dict[str, Any] = {"map": self.name}
            if self.decoded:
                rec["event"] = plain(event)
            else:
                rec["data"] = bytes(event).hex()
            if stacks:
                rec["stacks"] = stacks
            self.out.write(json.dumps(rec) + "\n")
        else:
            body = _fields_line(event) if self.decoded else bytes(event).hex()
            self.out.write(f"{self.name}: {body}\n")
            for frames in stacks.values():
                for fr in frames:
                    self.out.write(f"    {fr}\n")
        self.out.flush()


def _open_buffers(tool: Any, stacks: _Stacks, out: IO[str], json_out: bool) -> list[Any]:
    from .maps import PerfEventArrayMap, RingBufMap
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


# -- the command ------------------------------------------------------------------------

def _parse_value(text: str) -> Any:
    try:
        return int(text, 0)
    except ValueError:
        return text


def _open(path: str, defines: Mapping[str, str | None], rodata: Mapping[str, Any],
          server: str | None = None) -> Any:
    """Compile (unless ``path`` is an object) and open ``path``, not loaded yet."""
    from .base import ClbcBase
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise LccError(f"{path} does not exist")
    if path.endswith(".o"):
        with open(path, "rb") as f:
            return ClbcBase(os.path.basename(path)[:-2], obj=f.read(), rodata=rodata,
                            load=False)
    if not path.endswith(".c"):
        raise LccError(f"{path} is neither BPF C source (.bpf.c) nor a compiled object (.o)")
    if path.endswith(".bpf.c"):
        return ClbcBase(path, defines=defines, rodata=rodata, server=server, load=False)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    name = os.path.basename(path)[:-2]

    class _Prog(ClbcBase):
        def _source_dir(self) -> str:  # local #includes resolve beside the file
            return os.path.dirname(path)

    return _Prog(name, bpf_str=text, defines=defines, rodata=rodata, server=server, load=False)


def _keep_usable(tool: Any) -> dict[str, str]:
    """Turn off the programs this kernel cannot run; return {name: why}.

    Raises NotSupported when no program is left.
    """
    from . import features
    from .errors import NotSupported
    skipped: dict[str, str] = {}
    for prog in tool.obj.programs.values():
        if not prog.autoload:
            continue
        probe = features.probe_section(prog.section)
        if not probe:
            skipped[prog.name] = probe.reason
            prog.autoload = False
    if skipped and not any(p.autoload for p in tool.obj.programs.values()):
        why = "; ".join(f"{n} (SEC(\"{tool.obj.programs[n].section}\")): {r}"
                        for n, r in skipped.items())
        kinds = sorted({tool.obj.programs[n].kind for n in skipped})
        raise NotSupported(kinds[0] if len(kinds) == 1 else "programs",
                           f"no program of '{tool.name}' can run on this kernel: {why}",
                           hint="use tracepoint or tp_btf programs instead")
    return skipped


def _load(path: str, defines: Mapping[str, str | None], rodata: Mapping[str, Any],
          server: str | None = None, err: IO[str] | None = None) -> Any:
    """Open, keep the programs this kernel can run, load and attach; returns the tool."""
    tool = _open(path, defines, rodata, server)
    try:
        for name, why in _keep_usable(tool).items():
            if err is not None:
                err.write(f"lcc run: skipping program {name}: {why}\n")
        tool.load()
        tool.attach_all()
    except BaseException:
        tool.close()
        raise
    return tool


def run(path: str, defines: Mapping[str, str | None] | None = None,
        duration: float | None = None, json_out: bool = False,
        out: IO[str] | None = None, *, rodata: Mapping[str, Any] | None = None,
        server: str | None = None, err: IO[str] | None = None) -> int:
    """Load ``path``, print its events until stopped, then its maps; return the exit code.

    ``defines`` are ``-D`` macro definitions (name -> value or None),
    ``rodata`` sets ``const volatile`` globals before load, ``duration`` in
    seconds (None: until Ctrl-C or SIGTERM), ``server`` a compile service
    URL (default: ``LCC_SERVER``, else local clang).  Returns 0, or 1 after printing
    one line to ``err`` when compiling, loading or attaching fails.  ``out``
    and ``err`` default to ``sys.stdout`` and ``sys.stderr``.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        tool = _load(path, dict(defines or {}), dict(rodata or {}), server, err)
    except LccError as e:
        err.write(f"lcc run: {type(e).__name__}: {e}\n")
        return 1
    try:
        stacks = _Stacks(tool)
        bufs = _open_buffers(tool, stacks, out, json_out)
        progs = [p.name for p in tool.obj.programs.values() if p.autoload]
        with selectors.DefaultSelector() as sel:
            for b in bufs:
                sel.register(b.fileno(), selectors.EVENT_READ, b)

            def wait(timeout: float) -> None:
                if not bufs:
                    time.sleep(timeout)
                    return
                for key, _ in sel.select(timeout):
                    key.data.consume()

            with StopSignals() as stop:  # before the message: a stop may follow it at once
                err.write(f"Attached {len(tool.links)} of {len(progs)} programs "
                          f"({', '.join(progs)}); "
                          f"{len(bufs)} event buffer{'s' if len(bufs) != 1 else ''}. "
                          f"Hit Ctrl-C to end.\n")
                err.flush()
                until_stopped(wait, duration=duration, stop=stop)
                for b in bufs:  # what arrived while stopping
                    b.consume()
        dump_maps(tool, out, json_out)
        out.flush()
        return 0
    except LccError as e:
        err.write(f"lcc run: {type(e).__name__}: {e}\n")
        return 1
    finally:
        tool.close()


def _define(text: str) -> tuple[str, str | None]:
    name, eq, val = text.partition("=")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"not a macro name: {name!r}")
    return name, (val if eq else None)


def _assignment(text: str) -> tuple[str, Any]:
    name, eq, val = text.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, _parse_value(val)


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``lcc run``'s arguments to ``p``."""
    p.add_argument("path", help="BPF C source (.bpf.c) or a compiled BPF object (.o)")
    p.add_argument("-D", dest="defines", metavar="NAME[=VALUE]", action="append",
                   type=_define, default=[], help="define a macro for the compiler")
    p.add_argument("-s", "--set", dest="rodata", metavar="NAME=VALUE", action="append",
                   type=_assignment, default=[],
                   help="set a const volatile global before load (integers or strings)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                   help="stop after SECONDS (default: at Ctrl-C or SIGTERM)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--server", metavar="URL",
                   help="compile service URL (default: LCC_SERVER, else local clang)")
    return p


HELP = "load a BPF program, print its events and, at exit, its maps"


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    """Register ``run`` on an argparse subparsers object; it dispatches to :func:`main`."""
    p = subparsers.add_parser(
        "run", parents=list(parents), help=HELP,
        description="Load a BPF program, attach it by its SEC() names, print every "
                    "ring/perf buffer event as it comes, and print its maps at exit "
                    "(histogram-shaped maps as log2 histograms).")
    configure_parser(p)
    p.set_defaults(func=main)
    return p


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``lcc.cli`` subcommand hook: ``lcc run``."""
    add_parser(sub, [common])


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``lcc run`` from parsed arguments (or an argv list); return the exit code."""
    if not isinstance(args, argparse.Namespace):
        args = configure_parser(argparse.ArgumentParser(prog="lcc run")).parse_args(args)
    return run(args.path, dict(args.defines), args.duration, args.json,
               rodata=dict(args.rodata), server=getattr(args, "server", None))


if __name__ == "__main__":
    sys.exit(main())
