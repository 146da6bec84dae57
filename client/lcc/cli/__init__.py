"""The ``lcc`` command: a thin edge over the library.

Every subcommand lives in a module that registers it through
``register(subparsers, common)`` (``common``: the parent parser with the
options every command takes), setting ``func`` (called with the parsed
arguments, returns the exit status).  :data:`SUBCOMMANDS` lists the modules
in ``--help`` order: a bare name is a module of this package, a dotted one
an absolute module (a command shipped in another package).

Errors: the library's :class:`~lcc.errors.LccError` becomes
``lcc <command>: <message>`` on stderr (no class name; a verifier rejection
adds its source line, a hint and the tail of the verifier log, ``-v`` all of
it: :func:`~lcc.cli.common.error_report`) and exit status 1; a usage error is argparse's
(status 2); an interrupt is status 130.  ``-v`` (before or after the
subcommand) turns on lcc's debug log and forwards all of libbpf's messages.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import LccError

__all__ = ["SUBCOMMANDS", "build_parser", "main", "version"]

#: Subcommand modules, in --help order (bare names are modules of this package).
SUBCOMMANDS: list[str] = ["compile", "run", "export", "inspect", "doctor", "cache", "btf",
                          "trust", "server"]


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``
    (a source checkout on PYTHONPATH)."""
    from importlib import metadata
    try:
        return metadata.version("lcc")
    except metadata.PackageNotFoundError:
        from .. import __version__
        return __version__


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser._print_message(f"lcc {version()}\n", sys.stdout)
        parser.exit()


def _common() -> argparse.ArgumentParser:
    """Options every subcommand accepts too (so ``lcc compile -v x.bpf.c`` works)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging from lcc and libbpf")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcc", description="Compile, inspect and serve BPF programs for lcc tools.",
        epilog="Environment: LCC_SERVER (compile service URL), LCC_TOKEN (its bearer token), "
               "LCC_BACKEND (local|server|docker), LCC_CACHE_DIR (artifact cache), "
               "LCC_TRUSTED_KEYS (service signing keys to trust), LCC_TIMEOUT.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging from lcc and libbpf")
    parser.add_argument("--version", action=_VersionAction,
                        help="print lcc's version and exit")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    common = _common()
    for name in SUBCOMMANDS:
        module = name if "." in name else f"{__name__}.{name}"
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # a command shipped separately and not installed here
        mod.register(sub, common)
    return parser


def _set_verbose() -> None:
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.INFO)
    from .. import _libbpf
    _libbpf.set_verbose(True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcc`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if verbose:
        _set_verbose()
    else:
        logging.basicConfig(level=logging.WARNING, format="lcc: %(message)s", stream=sys.stderr)
        # urllib3 logs each retried connection; the final error says it all.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except LccError as e:
        from .common import error_report
        sys.stderr.write(error_report(getattr(args, "command", None), e, verbose))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lcc inspect x.o | head`
        sys.stderr.close()
        return 0
