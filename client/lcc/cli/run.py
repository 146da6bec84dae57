"""``lcc run``: load any BPF program, print its events as they come and its maps at exit.

:func:`run` compiles and loads a ``.bpf.c`` file (or a compiled ``.o``)
with :class:`lcc.ClbcBase` and attaches its programs by their SEC() names.
Programs this kernel cannot run (a kprobe without kprobes, an fentry that
the kernel refuses, a missing tracepoint) are skipped with a note, so a
tool's alternatives all load where they can; if none is left, it fails with
:class:`~lcc.errors.NotSupported`.  Then it prints each event of every ring
buffer and perf buffer, and at exit (duration over, Ctrl-C, SIGTERM or
SIGHUP) every map and the globals, as :mod:`lcc.show` draws them.

The loop is :mod:`lcc.loop`'s: signals only set a flag, so no event is lost
or printed by halves.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from typing import IO, Any, Mapping

from .. import loop, show
from ..compile.defines import parse_define
from ..errors import LccError

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


def _open(path: str, defines: Mapping[str, str | None], rodata: Mapping[str, Any],
          server: str | None = None) -> Any:
    """Compile (unless ``path`` is an object) and open ``path``, not loaded yet."""
    from ..base import ClbcBase
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


def _keep_usable(tool: Any, probes: Probes | None = None) -> dict[str, str]:
    """Turn off the programs this kernel cannot run, as ``probes`` (default: the
    process-wide ones) judge them; return {name: why}.

    Raises NotSupported when no program is left.
    """
    from .. import features
    from ..errors import NotSupported
    probes = probes if probes is not None else features.probes()
    skipped: dict[str, str] = {}
    for prog in tool.obj.programs.values():
        if not prog.autoload:
            continue
        probe = probes.probe_section(prog.section)
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
        server: str | None = None, err: IO[str] | None = None,
        prometheus: str | None = None) -> int:
    """Load ``path``, print its events until stopped, then its maps; return the exit code.

    ``defines`` are ``-D`` macro definitions (name -> value or None),
    ``rodata`` sets ``const volatile`` globals before load, ``duration`` in
    seconds (None: until Ctrl-C or SIGTERM), ``server`` a compile service
    URL (default: ``LCC_SERVER``, else local clang), ``prometheus`` an
    address to serve the maps at as Prometheus metrics too (as ``lcc export``).
    Returns 0, or 1 after printing one line to ``err`` when compiling, loading,
    attaching or serving fails.  ``out``
    and ``err`` default to ``sys.stdout`` and ``sys.stderr``.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        tool = _load(path, dict(defines or {}), dict(rodata or {}), server, err)
    except LccError as e:
        err.write(f"lcc run: {type(e).__name__}: {e}\n")
        return 1
    exporter = None
    try:
        bufs = show.open_event_printers(tool, out, json_out)
        if prometheus:
            from .export import start
            exporter = start(tool, prometheus, bufs)
        progs = [p.name for p in tool.obj.programs.values() if p.autoload]
        group = tool.poll_group if bufs else None  # every buffer, in one epoll set
        # Stop signals are caught before the message: a stop may follow it at once.
        with loop.stopping(duration, signals=STOP_SIGNALS) as stop:
            err.write(f"Attached {len(tool.links)} of {len(progs)} programs "
                      f"({', '.join(progs)}); "
                      f"{len(bufs)} event buffer{'s' if len(bufs) != 1 else ''}. "
                      f"Hit Ctrl-C to end.\n")
            err.flush()
            stop.run(group.poll if group is not None else None)
            if group is not None:
                group.consume()  # what arrived while stopping
        show.dump_maps(tool, out, json_out)
        out.flush()
        return 0
    except LccError as e:
        err.write(f"lcc run: {type(e).__name__}: {e}\n")
        return 1
    finally:
        if exporter is not None:
            exporter.close()
        tool.close()


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
    p.add_argument("--prometheus", metavar="[HOST]:PORT",
                   help="also serve the maps as Prometheus metrics at this address "
                        "(as lcc export does)")
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
               prometheus=getattr(args, "prometheus", None))
