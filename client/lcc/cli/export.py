"""``lcc export``: load a BPF program and serve its maps as Prometheus metrics.

:func:`export` loads a tool as ``lcc run`` does (the programs this kernel
cannot run are skipped), counts the events of its ring and perf buffers,
and serves ``/metrics`` through :mod:`lcc.export` until the duration is over
or Ctrl-C, SIGTERM or SIGHUP.  The maps are read at each scrape.
:func:`start` is the part ``lcc run --prometheus`` shares.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import IO, Any, Iterable, Mapping

from .. import loop
from ..errors import LccError
from .common import error_report
from .run import STOP_SIGNALS, _load, add_program_arguments

__all__ = ["DEFAULT_LISTEN", "export", "main", "register", "start"]

#: Where ``lcc export`` listens unless told: loopback, ebpf_exporter's port + 1.
DEFAULT_LISTEN = "127.0.0.1:9435"


def _tool_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".bpf.c", ".bpf.o", ".c", ".o"):
        if base.endswith(suffix):
            return base[:-len(suffix)]
    return base


def start(tool: Any, listen: str, buffers: Iterable[Any] = (), config: Any = None,
          name: str | None = None) -> Any:
    """Serve ``tool``'s maps and ``buffers``' counts at ``listen``; returns the
    :class:`lcc.export.Server` (close it before the tool).  Raises LccError."""
    from ..export import MapCollector, serve
    collector = MapCollector(tool.maps, name or tool.name, config, buffers)
    return serve(collector, listen)


def _count_events(tool: Any) -> list[Any]:
    """Open every ring and perf buffer with a callback that only lets the buffer
    count the event; returns the buffers."""
    from ..maps import PerfEventArrayMap, RingBufMap

    def drop(_event: Any) -> None:
        pass

    bufs = []
    for name in tool.maps:
        m = tool.maps[name]
        if isinstance(m, RingBufMap):
            bufs.append(m.open_ring_buffer(drop, raw=True))
        elif isinstance(m, PerfEventArrayMap):
            bufs.append(m.open_perf_buffer(drop, raw=True))
    return bufs


def export(path: str, listen: str = DEFAULT_LISTEN, config_path: str | None = None,
           defines: Mapping[str, str | None] | None = None, duration: float | None = None,
           *, rodata: Mapping[str, Any] | None = None, server: str | None = None,
           err: IO[str] | None = None) -> int:
    """Load ``path`` and serve its metrics at ``listen`` until stopped; return the exit code.

    ``config_path`` is an export config (TOML, see :class:`lcc.export.ExportConfig`);
    ``defines``, ``rodata``, ``duration`` and ``server`` are as for ``lcc run``.
    Returns 0, or 1 after one line on ``err`` (default stderr) when the config,
    the program or the address is refused.
    """
    err = err if err is not None else sys.stderr
    try:
        from ..export import ExportConfig, _prometheus
        _prometheus()  # before compiling: say at once what is missing
        config = ExportConfig.load(config_path) if config_path else ExportConfig()
        tool = _load(path, dict(defines or {}), dict(rodata or {}), server, err)
    except LccError as e:
        err.write(error_report("export", e))
        return 1
    httpd = None
    try:
        bufs = _count_events(tool)
        group = tool.poll_group if bufs else None
        with loop.stopping(duration, signals=STOP_SIGNALS) as stop:
            httpd = start(tool, listen, bufs, config, _tool_name(path))
            host, port = httpd.address
            err.write(f"Serving {_tool_name(path)}'s metrics on http://{host}:{port}/metrics "
                      f"({len(bufs)} event buffer{'s' if len(bufs) != 1 else ''}). "
                      f"Hit Ctrl-C to end.\n")
            err.flush()
            stop.run(group.poll if group is not None else None)
        return 0
    except LccError as e:
        err.write(error_report("export", e))
        return 1
    finally:
        if httpd is not None:
            httpd.close()
        tool.close()


HELP = "load a BPF program and serve its maps as Prometheus metrics"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export", parents=[common], help=HELP,
        description="Load a BPF program, attach it by its SEC() names and serve its maps "
                    "at http://LISTEN/metrics for Prometheus: integer values as counters "
                    "labelled by their BTF keys, log2 histogram maps as histograms, and "
                    "event counts of its ring and perf buffers. Needs prometheus-client "
                    "(pip install 'lcc[export]').")
    add_program_arguments(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="[HOST]:PORT",
                   help=f"address of the metrics endpoint (default: {DEFAULT_LISTEN})")
    p.add_argument("--config", metavar="FILE",
                   help="export config (TOML): metric names, types, help and labels per map")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run ``lcc export`` from its parsed arguments; return the exit code."""
    return export(args.path, args.listen, args.config, dict(args.defines), args.duration,
                  rodata=dict(args.rodata), server=args.server)
