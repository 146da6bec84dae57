"""What every example tool's command line has: -d/--duration, --json, a clean stop.

- :func:`add_common_args` adds ``-d/--duration SECONDS``, ``--json`` and ``-v/--verbose``.
- :class:`Session` turns Ctrl-C and SIGTERM into a flag, so a tool leaves its
  loop, prints its summary and exits 0; it also ends the loop when the
  duration is over.
- :func:`run_tool` is the edge between a tool and the terminal: an
  :class:`lcc.LccError` becomes one line on stderr (with its hint) and exit
  status 1; a closed pipe (``tool | head``) ends quietly.
- :func:`print_json` writes one JSON object per line and flushes.
- :func:`fallback_report` says which alternative programs a tool runs and why
  the others were passed over; :func:`report_fallbacks` prints that with ``-v``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Iterable, Sequence


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add -d/--duration, --json and -v/--verbose to ``parser``."""
    parser.add_argument("-d", "--duration", type=positive_float, metavar="SECONDS",
                        help="stop after SECONDS (default: run until Ctrl-C or SIGTERM)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say which programs were chosen, and why others were not")


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object on one line of stdout, flushed (for pipes and tests)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A status line for the user; on stderr so that stdout stays data (--json)."""
    print(message, file=sys.stderr, flush=True)


class Session:
    """The main loop's clock and stop flag; use it as a context manager.

    While active, SIGINT and SIGTERM set :attr:`stopping` instead of killing
    the process (the previous handlers come back on exit).  A blocking poll
    is interrupted by the signal (EINTR), so the loop sees the flag at once.
    """

    def __init__(self, duration: float | None = None) -> None:
        self.duration = duration
        self.started = time.monotonic()
        self.stopping = False
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Session":
        self.started = time.monotonic()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        self.signal = signum

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left of the duration (None: no duration)."""
        if self.duration is None:
            return None
        return max(0.0, self.duration - self.elapsed())

    @property
    def done(self) -> bool:
        """True once a signal arrived or the duration is over."""
        if self.stopping:
            return True
        rem = self.remaining()
        return rem is not None and rem <= 0

    def run(self, poll: Callable[[int], Any], tick: float = 0.25) -> None:
        """Call ``poll(timeout_ms)`` until :attr:`done`."""
        while not self.done:
            rem = self.remaining()
            wait = tick if rem is None else min(tick, rem)
            poll(max(1, int(wait * 1000)))

    def sleep(self, seconds: float, tick: float = 0.1) -> bool:
        """Sleep ``seconds`` (cut short by a stop); True if the whole time passed."""
        end = time.monotonic() + seconds
        while not self.done:
            left = end - time.monotonic()
            if left <= 0:
                return True
            rem = self.remaining()
            time.sleep(min(tick, left, rem if rem is not None else tick))
        return False


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
    except KeyboardInterrupt:  # Ctrl-C before the session started (while compiling)
        return 130
    except BrokenPipeError:
        # stdout went away (`tool | head`): exit without a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter exit quiet
        except OSError:
            pass
        return 0


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
