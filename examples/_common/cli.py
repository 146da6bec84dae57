"""What every example tool's command line has: -d/--duration, --json, -v, one-line errors.

- :func:`add_common_args` adds ``-d/--duration SECONDS``, ``--json`` and ``-v/--verbose``;
  a tool passes the duration to :func:`lcc.loop.stopping`, which turns Ctrl-C
  and SIGTERM into a flag, so the tool leaves its loop, prints its summary
  and exits 0.
- :func:`run_tool` is the edge between a tool and the terminal: an
  :class:`lcc.LccError` becomes one line on stderr (with its hint) and exit
  status 1; a closed pipe (``tool | head``) ends quietly.
- :func:`print_json` writes one JSON object per line and flushes.
- :func:`formatter` gives argparse its help width without ``shutil`` (which
  argparse would import for it, with zlib, bz2 and lzma, on every start).
- :func:`fallback_report` says which alternative programs a tool runs and why
  the others were passed over; :func:`report_fallbacks` prints that with ``-v``.
"""

from __future__ import annotations

import argparse
import os
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence

# Imports stay few here: everything imported before a tool's ready line is
# start time (json, for one, is imported by the functions that write it).


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, then stdout's tty, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def formatter(cls: type[argparse.HelpFormatter] = argparse.HelpFormatter
              ) -> Callable[[str], argparse.HelpFormatter]:
    """An argparse ``formatter_class`` making ``cls`` with the help width already known.

    argparse makes a formatter for every ``add_argument`` and, without a
    width, imports ``shutil`` to ask the terminal's (a few ms and half a MiB
    of compression modules at each start).  The width is read when the
    formatter is made, as argparse would (minus its 2 columns of margin).
    """
    def make(prog: str) -> argparse.HelpFormatter:
        return cls(prog, width=_columns() - 2)

    return make


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add -d/--duration, --json and -v/--verbose to ``parser``."""
    parser.add_argument("-d", "--duration", type=positive_float, metavar="SECONDS",
                        help="stop after SECONDS (default: run until Ctrl-C or SIGTERM)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say which programs were chosen, and why others were not")


def print_json(obj: dict[str, Any], *, flush: bool = True) -> None:
    """One JSON object on one line of stdout, flushed (for pipes and tests) unless
    ``flush=False`` (a tool that flushes once per poll)."""
    import json  # only once a tool prints JSON: not part of its start

    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    if flush:
        sys.stdout.flush()


def info(message: str) -> None:
    """A status line for the user; on stderr so that stdout stays data (--json)."""
    print(message, file=sys.stderr, flush=True)


def fallback_report(tool: Any) -> list[str]:
    """Lines describing each fallback of ``tool`` (an lcc ClbcBase): chosen and skipped."""
    lines = []
    for fb in getattr(tool, "_fallbacks", []):
        if fb.chosen:
            lines.append(f"using {' + '.join(fb.chosen)}")
        for alt, why in fb.skipped:
            # One reason per program of the alternative; they often repeat.
            reasons = list(dict.fromkeys(r.strip() for r in why.split("; ") if r.strip()))
            lines.append(f"skipped {' + '.join(alt)}: {'; '.join(reasons)}")
    return lines


def report_fallbacks(tool: Any, verbose: bool) -> None:
    """With ``-v`` (``verbose``), say on stderr what :func:`fallback_report` says."""
    if verbose:
        for line in fallback_report(tool):
            info(line)


def run_tool(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run ``main(argv)`` and turn lcc errors into one line and exit status 1."""
    from lcc import LccError

    name = prog or os.path.basename(sys.argv[0]).removesuffix(".py")
    try:
        return main(argv) or 0
    except LccError as e:
        hint = getattr(e, "hint", None)
        msg = str(e)
        if hint and hint not in msg:
            msg = f"{msg} ({hint})"
        print(f"{name}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the loop started (while compiling)
        return 130
    except BrokenPipeError:
        # stdout went away (`tool | head`): exit without a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter exit quiet
        except OSError:
            pass
        return 0


def ring_mib(text: str) -> int:
    """argparse type: a ring buffer size in MiB, a power of two from 1 to 1024."""
    try:
        mib = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}") from None
    if not 1 <= mib <= 1024 or mib & (mib - 1):
        raise argparse.ArgumentTypeError(f"must be a power of 2 from 1 to 1024: {text!r}")
    return mib


def add_ring_arg(parser: argparse.ArgumentParser, default_mib: int) -> None:
    """Add ``--ring-mib MIB``: the size of the tool's ``events`` ring buffer.

    The ring is mapped (twice, so that a record never wraps) and resident
    from the start: it counts in the tool's memory whether or not it fills.
    A tool passes ``ring_sizes(args)`` as ``map_sizes`` to its constructor.
    """
    parser.add_argument("--ring-mib", type=ring_mib, default=default_mib, metavar="MIB",
                        help=f"events ring buffer size in MiB, a power of 2 (default "
                             f"{default_mib}): room for the backlog of a burst, and twice "
                             "that in the tool's resident memory")


def ring_sizes(args: argparse.Namespace) -> dict[str, int]:
    """``{"events": bytes}`` from ``--ring-mib``, for ``ClbcBase(map_sizes=...)``."""
    return {"events": args.ring_mib << 20}


def ports(text: str) -> list[int]:
    """argparse type: a comma-separated list of ports (``80,443``)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            port = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {part!r}") from None
        if not 0 < port < 65536:
            raise argparse.ArgumentTypeError(f"port out of range: {port}")
        out.append(port)
    if not out:
        raise argparse.ArgumentTypeError("no port given")
    return out


def flatten(lists: Iterable[Iterable[int]] | None) -> list[int]:
    """Merge repeated list options (``-L 80 -L 443,8080``) into one list."""
    return [x for sub in (lists or []) for x in sub]
