"""``lcc run``: load any BPF program, print its events as they come and its maps at exit.

:func:`run` compiles and loads a ``.bpf.c`` file (or a compiled ``.o``)
with :class:`lcc.ClbcBase`, lcc's own programs and libbpf's (libbpf-tools,
libbpf-bootstrap) alike, and does what their C loaders would:

- programs this kernel cannot run (a kprobe without kprobes, an fentry the
  kernel refuses, a missing tracepoint) are skipped with a note; of
  programs that do one job in different ways (``tp_btf/X`` and
  ``raw_tp/X``, ``fentry/F`` and ``kprobe/F``: :func:`alternative_groups`)
  one is loaded, the best this kernel accepts (a :class:`lcc.Fallback`);
  if nothing is left, it fails with :class:`~lcc.errors.NotSupported`;
- maps the program leaves at 0 entries for its loader to size get
  ``--map-size`` or lcc's defaults (:data:`lcc.spec.DEFAULT_MAX_ENTRIES`);
- every ring buffer and perf event array gets an event type: the one
  named with ``--event-type``, the one the map declares (``lbc_event``),
  or a guess from what the programs send it (:mod:`lcc.maps.eventtypes`).
  Compiling from source, it keeps the structs the source defines in BTF,
  so that a type used only for locals can be found;
- programs are attached by their SEC() names, ``perf_event`` programs to
  the CPU clock on every CPU (``-F`` samples per second); attaching
  nothing is an error.

Then it prints each event of every ring buffer and perf buffer, and at exit
(duration over, Ctrl-C, SIGTERM or SIGHUP) every map and the globals, as
:mod:`lcc.show` draws them.  The loop is :mod:`lcc.loop`'s: signals only
set a flag, so no event is lost or printed by halves.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from typing import IO, Any, Iterable, Mapping

from .. import loop, show
from ..compile.defines import parse_define
from ..errors import LccError
from .common import error_report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..features import Probes

__all__ = ["configure_parser", "main", "register", "run"]

#: What ends ``lcc run`` cleanly (maps printed): Ctrl-C, SIGTERM and a hangup.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _parse_value(text: str) -> Any:
    try:
        return int(text, 0)
    except ValueError:
        return text


#: What ``SEC("perf_event")`` programs are attached to: the CPU clock
#: (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK), sampled on every CPU.
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK = 1, 0
#: Samples per second on each CPU without ``-F`` (libbpf-tools' profile's default).
DEFAULT_FREQUENCY = 49


class _Notes:
    """What ``lcc run`` says on its err stream besides errors: ``lcc run: ...`` lines."""

    def __init__(self, err: IO[str] | None) -> None:
        self.err = err

    def __call__(self, text: str) -> None:
        if self.err is not None:
            self.err.write(f"lcc run: {text}\n")


def _open(path: str, defines: Mapping[str, str | None], rodata: Mapping[str, Any],
          server: str | None = None, keep: Iterable[str] = ()) -> tuple[Any, list[str]]:
    """Compile (unless ``path`` is an object) and open ``path``, not loaded yet.

    Returns the tool and the structs the source defines (``struct event``...).
    Those, and the ``keep`` types, are kept in the object's BTF
    (``ClbcBase(keep_types=...)``), so that events whose type the program
    uses only for locals can still be decoded.
    """
    from ..base import ClbcBase
    from ..maps import eventtypes
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise LccError(f"{path} does not exist")
    if path.endswith(".o"):
        with open(path, "rb") as f:
            return ClbcBase(os.path.basename(path)[:-2], obj=f.read(), rodata=rodata,
                            load=False), []
    if not path.endswith(".c"):
        raise LccError(f"{path} is neither BPF C source (.bpf.c) nor a compiled object (.o)")
    from ..compile.bundle import Bundle
    local = eventtypes.defined_structs(Bundle.from_path(path).files.values())
    kw = dict(defines=defines, rodata=rodata, server=server, load=False,
              keep_types=[*local, *keep])
    if path.endswith(".bpf.c"):
        return ClbcBase(path, **kw), local
    with open(path, encoding="utf-8") as f:
        text = f.read()
    name = os.path.basename(path)[:-2]

    class _Prog(ClbcBase):
        def _source_dir(self) -> str:  # local #includes resolve beside the file
            return os.path.dirname(path)

    return _Prog(name, bpf_str=text, **kw), local


# -- alternatives ---------------------------------------------------------------------

# SEC() kind -> (what it attaches to, rank: lower is preferred), for programs
# that a C loader treats as alternatives when they share a target.
_ALTERNATIVE_KINDS = {
    "tp_btf": ("tracepoint", 0), "raw_tp": ("tracepoint", 1), "raw_tracepoint": ("tracepoint", 1),
    "tracepoint": ("tracepoint", 2), "tp": ("tracepoint", 2),
    "fentry": ("entry", 0), "kprobe": ("entry", 1),
    "fexit": ("exit", 0), "kretprobe": ("exit", 1),
}


def alternative_groups(programs: Iterable[Any]) -> list[list[tuple[str, ...]]]:
    """Programs that do one job in different ways, best first, as libbpf-tools
    ships them: ``tp_btf/X``, ``raw_tp/X`` and ``tracepoint/*/X`` on the same
    tracepoint; ``fentry/F`` and ``kprobe/F``; ``fexit/F`` and ``kretprobe/F``.

    ``programs``: :class:`lcc.ProgramSpec` objects.  Returns one list per job
    done by programs of more than one kind: its alternatives (the names of
    one kind's programs), best first.
    """
    jobs: dict[tuple[str, str], dict[int, list[str]]] = {}
    for p in programs:
        kind = _ALTERNATIVE_KINDS.get(p.kind)
        target = p.target.rsplit("/", 1)[-1] if p.kind in ("tracepoint", "tp") else p.target
        if kind is None or not target or "+" in target or "*" in target:
            continue
        job, rank = kind
        jobs.setdefault((job, target), {}).setdefault(rank, []).append(p.name)
    return [[tuple(ranks[r]) for r in sorted(ranks)] for ranks in jobs.values() if len(ranks) > 1]


def _choose(tool: Any, probes: Probes, note: _Notes) -> None:
    """Keep what this kernel can run: one alternative of each job (a
    :class:`lcc.Fallback`, so that a verifier rejection tries the next) and
    the other programs it accepts.

    Raises NotSupported when no program is left.
    """
    from ..base import Fallback
    from ..errors import NotSupported
    progs = tool.spec.programs
    skipped: dict[str, str] = {}
    fallbacks = []
    grouped = set()
    for alts in alternative_groups(p for p in progs.values() if p.autoload):
        grouped.update(n for alt in alts for n in alt)
        usable = []
        for alt in alts:
            why = next((r.reason for r in (probes.probe_section(progs[n].section) for n in alt)
                        if not r), None)
            if why is None:
                usable.append(alt)
            else:
                for n in alt:
                    skipped[n] = why
                    progs[n].autoload = False
        if usable:
            fallbacks.append(Fallback(*usable))
    for p in progs.values():
        if p.autoload and p.name not in grouped:
            probe = probes.probe_section(p.section)
            if not probe:
                skipped[p.name] = probe.reason
                p.autoload = False
    if not any(p.autoload for p in progs.values()):
        why = "; ".join(f"{n} (SEC(\"{progs[n].section}\")): {r}" for n, r in skipped.items())
        kinds = sorted({progs[n].kind for n in skipped})
        raise NotSupported(kinds[0] if len(kinds) == 1 else "programs",
                           f"no program of '{tool.name}' can run on this kernel: "
                           f"{why or 'it has none'}",
                           hint="use tracepoint or tp_btf programs instead")
    for name, why in skipped.items():
        note(f"skipping program {name}: {why}")
    if fallbacks:
        tool.add_fallback(*fallbacks)


# -- map sizes and event types -------------------------------------------------------------

def _size_maps(spec: Any, sizes: Mapping[str, int], note: _Notes) -> None:
    """Resize the maps named in ``sizes``; give the maps the object leaves at
    0 entries lcc's defaults (:data:`lcc.spec.DEFAULT_MAX_ENTRIES`)."""
    for name, n in sizes.items():
        try:
            spec.resize_map(name, n)
        except KeyError as e:
            raise LccError(f"--map-size: {e.args[0]}") from None
    for name, n in spec.default_map_sizes().items():
        if spec.map_spec(name).type not in (4, 16):  # perf event array, CPU map: one per CPU
            note(f"map {name} sized {n} (the program leaves its size to its loader; "
                 f"--map-size {name}=N to choose)")
    for name, n in spec.default_value_sizes().items():
        note(f"stack map {name} holds {n // 8} frames (the program leaves its depth to its "
             "loader)")


def _event_types(tool: Any, named: Mapping[str, str], local: list[str], note: _Notes) -> None:
    """Give each event map its event type: the one named, else the one it declares,
    else a guess from what the programs send it (see :mod:`lcc.maps.eventtypes`)."""
    from ..maps import EventMap
    maps = {n: tool.maps[n] for n in tool.maps}
    events = {n: m for n, m in maps.items() if isinstance(m, EventMap)}
    for name, type_name in named.items():
        if name not in events:
            raise LccError(f"--event-type: the object has no ring buffer or perf event array "
                           f"named '{name}' (it has: {', '.join(events) or 'none'})")
        events[name].set_event_type(type_name)
    for name, m in events.items():
        if name in named or m.event_type is not None:
            continue
        guess = m.guess_event_type(prefer=local)
        if guess is None:
            note(f"{name}: no event type found: events print as hex "
                 f"(--event-type {name}='struct NAME' to decode them)")
            continue
        m.set_event_type(guess.type)
        also = f"; also fits: {', '.join(guess.others[:3])}" if guess.others else ""
        note(f"{name}: decoding events as {guess.type} ({guess.reason}{also}; "
             f"--event-type {name}=TYPE to choose)")


# -- attaching ---------------------------------------------------------------------------

def _attach(tool: Any, frequency: int, note: _Notes) -> None:
    """Attach every loaded program: by SEC() name, ``perf_event`` programs to
    the CPU clock at ``frequency`` Hz on every CPU.  Raises LccError when
    nothing could be attached."""
    from .. import links
    from ..errors import NotSupported
    left = []
    for prog in tool.obj.programs.values():
        if prog.fd < 0:  # not loaded
            continue
        if prog.kind == "perf_event":
            tool.attach_perf_event(prog.name, event_type=PERF_TYPE_SOFTWARE,
                                   config=PERF_COUNT_SW_CPU_CLOCK, sample_freq=frequency)
        elif links.needs_explicit_attach(prog) or (
                prog.kind.startswith("usdt") and prog.target.startswith("/proc/self/")):
            # (a USDT section that names the loader's own binary means the C
            # loader, not lcc's Python)
            left.append(prog)
        else:
            tool.links.append(links.attach_auto(prog))  # the tool owns its links
    for prog in left:
        note(f"not attaching program {prog.name}: SEC(\"{prog.section}\") needs a target "
             "(an interface, a cgroup, a binary...) that lcc run cannot choose")
    if not tool.links:
        what = ", ".join(f"{p.name} (SEC(\"{p.section}\"))" for p in left) or "none loaded"
        raise NotSupported("attach", f"lcc run attached no program of '{tool.name}': {what}",
                           hint="attach such programs from Python (ClbcBase.attach_xdp, "
                                "attach_cgroup, attach_uprobe...)")


def _load(path: str, defines: Mapping[str, str | None], rodata: Mapping[str, Any],
          server: str | None = None, err: IO[str] | None = None, *,
          event_types: Mapping[str, str] | None = None,
          map_sizes: Mapping[str, int] | None = None,
          frequency: int = DEFAULT_FREQUENCY, probes: Probes | None = None) -> Any:
    """Open, choose the programs this kernel can run, size the maps, load, give
    the event maps their types and attach; returns the tool."""
    from .. import features
    note = _Notes(err)
    event_types = dict(event_types or {})
    tool, local = _open(path, defines, rodata, server, keep=event_types.values())
    try:
        _choose(tool, probes if probes is not None else features.probes(), note)
        _size_maps(tool.spec, dict(map_sizes or {}), note)
        tool.load()
        for fb in tool.fallbacks:
            others = [n for alt in fb.alternatives if alt != fb.chosen for n in alt]
            if others:
                note(f"loading {', '.join(fb.chosen or ())} rather than its alternative "
                     f"{', '.join(others)}")
        _event_types(tool, event_types, local, note)
        _attach(tool, frequency, note)
    except BaseException:
        tool.close()
        raise
    return tool


def run(path: str, defines: Mapping[str, str | None] | None = None,
        duration: float | None = None, json_out: bool = False,
        out: IO[str] | None = None, *, rodata: Mapping[str, Any] | None = None,
        server: str | None = None, err: IO[str] | None = None,
        prometheus: str | None = None,
        event_types: Mapping[str, str] | None = None,
        map_sizes: Mapping[str, int] | None = None,
        frequency: int = DEFAULT_FREQUENCY, verbose: bool = False,
        printk: bool = False) -> int:
    """Load ``path``, print its events until stopped, then its maps; return the exit code.

    ``defines`` are ``-D`` macro definitions (name -> value or None),
    ``rodata`` sets ``const volatile`` globals before load, ``duration`` in
    seconds (None: until Ctrl-C or SIGTERM), ``server`` a compile service
    URL (default: ``LCC_SERVER``, else local clang).  ``event_types`` maps
    an event map to the C type of its events (``{"events": "struct
    event"}``); event maps not named are decoded with the type they declare
    or a guessed one.  ``map_sizes`` sets maps' max_entries (maps left at 0
    get defaults); ``frequency`` is the sampling rate of ``perf_event``
    programs; ``prometheus`` an address to serve the maps at as Prometheus
    metrics too (as ``lcc export``).  ``printk`` also prints the lines of
    ``<tracefs>/trace_pipe`` (``bpf_printk()``'s output, from every program
    on the system) as they come, each as ``printk: <line>`` (with
    ``json_out``: ``{"printk": msg, "task", "pid", "cpu", "ts"}``).  Returns 0, or 1 after printing
    ``lcc run: <message>`` to ``err`` when compiling, loading, attaching or
    serving fails or nothing could be attached (a verifier rejection: with
    the tail of the verifier's log, all of it when ``verbose``).  ``out`` and ``err`` default to ``sys.stdout`` and
    ``sys.stderr``.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    from .. import features
    allowed = features.bpf_privileges()
    if not allowed:  # before anything that would fail for this reason in other words
        err.write(error_report("run", LccError(allowed.reason), verbose))
        return 1
    pipe = None
    try:
        if printk:  # before loading: no point in loading what cannot be watched
            from ..tracepipe import TracePipe
            pipe = TracePipe()
        tool = _load(path, dict(defines or {}), dict(rodata or {}), server, err,
                     event_types=event_types, map_sizes=map_sizes, frequency=frequency)
    except LccError as e:
        if pipe is not None:
            pipe.close()
        err.write(error_report("run", e, verbose))
        return 1
    exporter = None
    try:
        bufs = show.open_event_printers(tool, out, json_out)
        if prometheus:
            from .export import start
            exporter = start(tool, prometheus, bufs)
        progs = [p.name for p in tool.obj.programs.values() if p.autoload]
        group = tool.poll_group if bufs else None  # every buffer, in one epoll set
        poll = _flushing(group.poll, out) if group is not None else None
        if pipe is not None:
            poll = _with_printk(pipe, group, out, json_out)
        # Stop signals are caught before the message: a stop may follow it at once.
        with loop.stopping(duration, signals=STOP_SIGNALS) as stop:
            err.write(f"Attached {len(tool.links)} of {len(progs)} programs "
                      f"({', '.join(progs)}); "
                      f"{len(bufs)} event buffer{'s' if len(bufs) != 1 else ''}. "
                      f"Hit Ctrl-C to end.\n")
            err.flush()
            stop.run(poll)
            if group is not None:
                group.consume()  # what arrived while stopping
            if pipe is not None:
                poll(0)
        show.dump_maps(tool, out, json_out)
        out.flush()
        return 0
    except LccError as e:
        err.write(error_report("run", e, verbose))
        return 1
    finally:
        if exporter is not None:
            exporter.close()
        if pipe is not None:
            pipe.close()
        tool.close()


def _flushing(poll: Any, out: IO[str]) -> Any:
    """``poll`` that flushes ``out`` after delivering events: one write per batch
    of events, not one per line (the printers only write)."""
    def poll_and_flush(timeout_ms: int) -> int:
        n = poll(timeout_ms)
        if n:
            out.flush()
        return n

    return poll_and_flush


def _with_printk(pipe: Any, group: Any, out: IO[str], json_out: bool) -> Any:
    """A ``poll(timeout_ms)`` for :meth:`lcc.loop.Stop.run` that waits on the
    trace pipe and the buffers' epoll fd together, then prints the whole
    trace_pipe lines waiting and delivers the buffers' events."""
    import json
    import select

    from ..tracepipe import parse

    def poll(timeout_ms: int) -> None:
        fds = [pipe] + ([group] if group is not None else [])
        ready, _, _ = select.select(fds, [], [], timeout_ms / 1000)
        if pipe in ready or timeout_ms == 0:
            for line in pipe.read_lines():
                if not json_out:
                    out.write(f"printk: {line.strip()}\n")
                    continue
                f = parse(line)
                out.write(json.dumps({"printk": line.strip()} if f is None else
                                     {"printk": f.msg, "task": f.task, "pid": f.pid,
                                      "cpu": f.cpu, "ts": f.ts}) + "\n")
            out.flush()
        if group is not None:
            # Rings are read at a timeout too: their producer may not signal
            # (LBC_RB_WAKEUP below its watermark).
            if (group.poll(0) if group in ready else group.consume(kind="ring")):
                out.flush()
    return poll


def _define(text: str) -> tuple[str, str | None]:
    try:
        return parse_define(text)
    except LccError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _assignment(text: str) -> tuple[str, Any]:
    name, eq, val = text.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, _parse_value(val)


def _event_type(text: str) -> tuple[str, str]:
    name, eq, type_name = text.partition("=")
    type_name = " ".join(type_name.split())
    if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) or not re.fullmatch(
            r"((struct|union|enum) )?[A-Za-z_][A-Za-z0-9_]*", type_name):
        raise argparse.ArgumentTypeError(f"expected MAP=TYPE (events='struct event'), "
                                         f"not {text!r}")
    return name, type_name


def _map_size(text: str) -> tuple[str, int]:
    name, eq, val = text.partition("=")
    try:
        n = int(val, 0)
    except ValueError:
        n = -1
    if not eq or not name or n <= 0:
        raise argparse.ArgumentTypeError(f"expected NAME=ENTRIES (a positive number), "
                                         f"not {text!r}")
    return name, n


def _frequency(text: str) -> int:
    try:
        hz = int(text)
    except ValueError:
        hz = 0
    if hz <= 0:
        raise argparse.ArgumentTypeError(f"expected samples per second, not {text!r}")
    return hz


def add_program_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of every command that loads a program and runs it until
    stopped (``lcc run``, ``lcc export``): the program, -D, -s, -d, --server."""
    p.add_argument("path", help="BPF C source (.bpf.c) or a compiled BPF object (.o)")
    p.add_argument("-D", dest="defines", metavar="NAME[=VALUE]", action="append",
                   type=_define, default=[], help="define a macro for the compiler")
    p.add_argument("-s", "--set", dest="rodata", metavar="NAME=VALUE", action="append",
                   type=_assignment, default=[],
                   help="set a const volatile global before load (integers or strings)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                   help="stop after SECONDS (default: at Ctrl-C or SIGTERM)")
    p.add_argument("--server", metavar="URL[,URL...]",
                   help="compile service URL, or several separated by commas (failover; "
                        "default: LCC_SERVER, else local clang)")


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``lcc run``'s arguments to ``p``."""
    add_program_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--event-type", dest="event_types", metavar="MAP=TYPE", action="append",
                   type=_event_type, default=[],
                   help="decode the events of ring buffer or perf event array MAP as TYPE "
                        "(events='struct event'); default: the type the map declares, else "
                        "a struct of the size the programs send")
    p.add_argument("--map-size", dest="map_sizes", metavar="NAME=ENTRIES", action="append",
                   type=_map_size, default=[],
                   help="set a map's max_entries before load (maps the program leaves at 0 "
                        "get a default: see the README)")
    p.add_argument("-F", "--frequency", type=_frequency, default=DEFAULT_FREQUENCY,
                   metavar="HZ", help="sample SEC(\"perf_event\") programs HZ times a second "
                                      f"on every CPU (default {DEFAULT_FREQUENCY})")
    p.add_argument("--prometheus", metavar="[HOST]:PORT",
                   help="also serve the maps as Prometheus metrics at this address "
                        "(as lcc export does)")
    p.add_argument("--printk", action="store_true",
                   help="also print bpf_printk() output (<tracefs>/trace_pipe, from every "
                        "program on the system) as it comes, each line as 'printk: LINE'")
    return p


HELP = "load a BPF program, print its events and, at exit, its maps"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run", parents=[common], help=HELP,
        description="Load a BPF program, attach it by its SEC() names, print every "
                    "ring/perf buffer event as it comes, and print its maps at exit "
                    "(histogram-shaped maps as log2 histograms).")
    configure_parser(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run ``lcc run`` from its parsed arguments; return the exit code."""
    return run(args.path, dict(args.defines), args.duration, args.json,
               rodata=dict(args.rodata), server=getattr(args, "server", None),
               prometheus=getattr(args, "prometheus", None),
               event_types=dict(args.event_types), map_sizes=dict(args.map_sizes),
               frequency=args.frequency, verbose=getattr(args, "verbose", False),
               printk=getattr(args, "printk", False))
