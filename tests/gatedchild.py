"""A child process held at a gate until the test has attached its probes.

``GatedChild(body, *args, setup=...)`` runs ``python -c`` on a script that
blocks SIGUSR1, runs ``setup``, says "ready" and waits in sigwait; only after
:meth:`GatedChild.release` (or :meth:`GatedChild.go`) does it run ``body`` and
leave with ``os._exit(0)`` (exit_group never returns, so a syscall tracer never
counts it).  Its startup syscalls all happen before the gate, so a tracer
attached while the child waits sees exactly what ``body`` does, no more.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

_SCRIPT = """\
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
{setup}
sys.stdout.write("ready\\n")
sys.stdout.flush()
signal.sigwait({{signal.SIGUSR1}})
{body}
os._exit(0)
"""


class GatedChild:
    """The child, waiting at its gate once constructed (``pid``, ``comm`` known).

    ``body`` and ``setup`` are Python statements (``os``, ``signal`` and ``sys``
    are imported; ``sys.argv[1:]`` holds ``args``); ``popen`` goes to
    :class:`subprocess.Popen` (e.g. ``stdin=subprocess.PIPE``).
    """

    def __init__(self, body: str, *args: object, setup: str = "", **popen: Any) -> None:
        script = _SCRIPT.format(setup=textwrap.dedent(setup), body=textwrap.dedent(body))
        self.proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                                     stdout=subprocess.PIPE, text=True, **popen)
        try:
            line = self.proc.stdout.readline()
            assert line == "ready\n", f"child did not reach its gate: {line!r}"
        except BaseException:
            self.kill()
            raise
        self.pid = self.proc.pid
        with open(f"/proc/{self.pid}/comm") as f:
            self.comm = f.read().rstrip("\n")
        self._wait_asleep()

    def _wait_asleep(self, timeout: float = 10) -> None:
        """Return once the child sleeps at its gate (state S: after "ready" its only
        sleep is sigwait); a tracer that attached between "ready" and the sigwait
        would see the sigwait's entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            if state == "S":
                return
            time.sleep(0.0005)
        self.kill()
        raise AssertionError(f"child {self.pid} did not reach its sigwait (state {state})")

    def release(self) -> None:
        """Open the gate: the child runs ``body`` now."""
        os.kill(self.pid, signal.SIGUSR1)

    def go(self, timeout: float = 30) -> None:
        """Open the gate and wait for the child to finish ``body`` with status 0."""
        self.release()
        self.wait(timeout)

    def wait(self, timeout: float = 30) -> None:
        """Wait for the child's end; it must exit with status 0."""
        assert self.proc.wait(timeout=timeout) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "GatedChild":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class GoOnAttach(io.StringIO):
    """``lcc run``'s err stream: when it reports the attach, the child runs to its end."""

    def __init__(self, child: GatedChild) -> None:
        super().__init__()
        self.child = child

    def write(self, s: str) -> int:
        n = super().write(s)
        if s.startswith("Attached"):
            self.child.go()
        return n
