"""Flame-graph output shared by the tools that sum stacks: ``-f`` (folded) and ``--svg FILE``.

- :func:`add_flame_args` adds ``-f/--folded`` (print folded stacks at exit,
  nothing else on stdout) and ``--svg FILE`` (write a flame graph drawn by
  :mod:`lcc.flame`).
- :func:`check_flame_args` refuses ``-f`` with ``--json`` (both claim stdout).
- :func:`write_flame` prints and writes what was asked for.
"""

from __future__ import annotations

import argparse
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Mapping


def add_flame_args(parser: argparse.ArgumentParser) -> None:
    """Add ``-f/--folded`` and ``--svg FILE`` to ``parser``."""
    parser.add_argument("-f", "--folded", action="store_true",
                        help="at exit print folded stacks ('root;...;leaf count' lines, the "
                             "input of flamegraph.pl, speedscope and inferno) and nothing else")
    parser.add_argument("--svg", metavar="FILE",
                        help="at exit write an interactive flame-graph SVG to FILE")


def check_flame_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse error for ``-f`` with ``--json``."""
    if args.folded and args.json:
        parser.error("-f/--folded and --json both print to stdout: choose one")


def write_flame(args: argparse.Namespace, folded: Mapping[str, int], *, title: str,
                unit: str, palette: str = "hot") -> None:
    """Print ``folded`` with ``-f``; write the SVG to ``--svg FILE`` (and say so on stderr)."""
    from lcc.flame import folded_lines, render_svg

    if args.folded:
        for line in folded_lines(folded):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as f:
            f.write(render_svg(folded, title=title, unit=unit, palette=palette))
        print(f"wrote {args.svg} ({len(folded)} stacks)", file=sys.stderr, flush=True)
