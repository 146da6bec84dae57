"""Helpers shared by the ``lcc`` subcommands: server selection, files, sizes."""

from __future__ import annotations

import argparse
import sys

from .._files import write_atomic
from ..errors import LccError

__all__ = ["VERIFIER_LOG_TAIL", "add_server_option", "command_with_actions", "error_report",
           "human_size", "server_client", "server_url", "warn", "write_file"]

#: Lines of a verifier log ``lcc`` prints with a rejection (``-v``: all of them).
VERIFIER_LOG_TAIL = 12


def command_with_actions(sub, common: argparse.ArgumentParser, name: str, help: str):
    """Register ``lcc NAME ACTION ...``; returns ``add(action, func, help, description)``,
    which registers one action (with the ``common`` options; running it calls
    ``func(args)``) and returns its parser for the action's own options."""
    p = sub.add_parser(name, parents=[common], help=help, description=help + ".")
    actions = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    def add(action: str, func, help: str, description: str) -> argparse.ArgumentParser:
        ap = actions.add_parser(action, parents=[common], help=help, description=description)
        ap.set_defaults(func=func)
        return ap
    return add


def add_server_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="URL[,URL...]",
                   help="compile service URL, or several separated by commas (tried in turn "
                        "when one fails; default: LCC_SERVER); its token comes from LCC_TOKEN")


def server_url(args: argparse.Namespace) -> str:
    """``--server`` or ``LCC_SERVER`` (one URL or a comma-separated list); raises
    :class:`LccError` when neither is set."""
    from ..compile.config import ClientConfig
    url = getattr(args, "server", None) or ClientConfig.from_env().server
    if not url:
        raise LccError("no compile service named", hint="pass --server URL or set LCC_SERVER")
    return url


def server_client(args: argparse.Namespace):
    """A :class:`lcc.compile.service.ServiceClient` for ``--server``/``LCC_SERVER``."""
    from ..compile.service import ServiceClient
    return ServiceClient(server_url(args))


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    try:
        write_atomic(path, data)
    except OSError as e:
        raise LccError(f"cannot write {path}: {e.strerror or e}") from None


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LccError(f"cannot read {path}: {e.strerror or e}") from None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def warn(text: str) -> None:
    print(text, file=sys.stderr)


def error_report(command: str | None, e: LccError, verbose: bool = False) -> str:
    """What the ``lcc`` command prints for a library error, ending with a newline.

    The last line(s) are ``lcc <command>: <message>`` (no class name; a
    verifier rejection keeps its source line and hint on the lines after
    it; a compile error lists its diagnostics with their source lines).
    Before them: for a verifier rejection, the tail of the verifier's log
    (``verbose``: all of it); for a compile error, the compiler's log when
    ``verbose``.
    """
    from ..compile.trust import printable  # messages can quote what a service said
    from ..errors import CompileError, ProgramLoadError
    prefix = f"lcc {command}: " if command else "lcc: "
    out: list[str] = []
    if isinstance(e, ProgramLoadError):
        log = e.verifier_log.rstrip().splitlines()
        if log:
            shown = log if verbose else log[-VERIFIER_LOG_TAIL:]
            head = ("verifier log:" if len(shown) == len(log) else
                    f"verifier log (last {len(shown)} of {len(log)} lines; -v shows all):")
            out.append(head)
            out.extend(f"  {printable(ln)}" for ln in shown)
        first, *rest = str(e).splitlines()
        out.append(prefix + printable(first))
        out.extend(printable(ln) for ln in rest)
        return "\n".join(out) + "\n"
    if isinstance(e, CompileError):
        if verbose and e.log:
            out.append(printable(e.log.rstrip()))
        first, *rest = str(e).splitlines()
        out.append(prefix + printable(first))
        out.extend(printable(ln) for ln in rest)
        return "\n".join(out) + "\n"
    out.append(prefix + printable(" ".join(str(e).split())))
    return "\n".join(out) + "\n"
