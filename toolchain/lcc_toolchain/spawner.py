"""A long-lived, single-threaded process that starts confined programs.

A multi-threaded caller (the compile service) may not confine a forked child
itself (Python code between ``fork`` and ``execve`` is unsafe there), and
starting a fresh Python per run (the trampoline) costs 10 ms and more on
every clang run.  ``Spawner`` starts one such Python once, the *spawner*,
and asks it over a Unix socket to fork for each run.  The spawner's child
(``lcc_toolchain.spawner_main``) applies ``sandbox_exec.main`` as the
trampoline does (the same options, the same steps, the same exit 125 on a
failed step) and executes the program.

Protocol (``AF_UNIX``/``SOCK_SEQPACKET``, so messages keep their bounds):

- the caller makes a socket pair per run and sends, on the control socket,
  the trampoline's arguments (``OPTIONS -- PROGRAM ARGS``, NUL-separated) with
  three descriptors: its end of the pair, the program's stdout and stderr;
- the spawner answers on the pair ``pid N`` (or ``error TEXT``), and
  ``exit N`` once the program ended (N as ``Popen.returncode``: ``-signal``
  when killed);
- ``kill`` from the caller, or the caller closing its end, kills the
  program's process group.

Lifetime: the spawner exits, killing its programs, when the control socket
closes (``Spawner.close()``, or the caller's process ending).  When it died,
the next run starts a new one; a run whose spawner died before it started is
retried once on the new one, one already started fails with
``SpawnerDied`` (the program was killed with its spawner: each child asks for
SIGKILL when its parent dies).  Nothing here weakens the confinement: a child
that cannot apply a step exits 125 before it executes anything.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import weakref
from pathlib import Path

__all__ = ["Spawner", "SpawnerDied"]


class SpawnerDied(OSError):
    """The spawner ended while it ran the program (the program was killed)."""


class Spawner:
    """The caller's side: starts the spawner on first use, restarts it when it
    died; safe to use from many threads at once."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        self._bootstrap = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
                           "from lcc_toolchain.spawner_main import serve; serve(int(sys.argv[1]))")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._finalizer = weakref.finalize(self, _stop, [None, None])

    @property
    def pid(self) -> int | None:
        """The running spawner's pid (None before the first run)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the spawner now rather than on the first run (idempotent)."""
        with self._lock:
            self._running_control()

    def _running_control(self) -> socket.socket:
        if self._proc is not None and self._proc.poll() is None and self._control is not None:
            return self._control
        _stop([self._proc, self._control])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - a fixed argv
                [self.python, "-E", "-s", "-S", "-c", self._bootstrap, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env={}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, [self._proc, ours])
        return ours

    def close(self) -> None:
        """Stop the spawner and the programs it runs."""
        with self._lock:
            _stop([self._proc, self._control])
            self._proc = self._control = None

    def launch(self, args: list[str], stdout: int, stderr: int) -> Run:
        """Start ``args`` (the trampoline's: ``OPTIONS -- PROGRAM ...``) with
        these descriptors as its stdout and stderr.  Raises ``OSError`` when
        the spawner cannot be started or cannot fork."""
        payload = b"\0".join(os.fsencode(a) for a in args)
        for attempt in (0, 1):
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                with self._lock:
                    control = self._running_control()
                    try:
                        socket.send_fds(control, [payload],
                                        [theirs.fileno(), stdout, stderr])
                    except OSError:
                        if attempt:
                            raise
                        # Died since the last run: start another.
                        _stop([self._proc, self._control])
                        self._proc = self._control = None
                        continue
                theirs.close()
                reply = mine.recv(256)
            except BaseException:
                mine.close()
                theirs.close()
                raise
            if reply.startswith(b"pid "):
                return Run(mine, int(reply[4:]))
            mine.close()
            if reply.startswith(b"error "):
                raise OSError(reply[6:].decode(errors="replace"))
            if attempt:  # died again before forking
                raise SpawnerDied("the sandbox spawner ended before it started the program")
        raise AssertionError("unreachable")


class Run:
    """One program started by the spawner."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None) -> int | None:
        """The program's return code, or None if it still runs after
        ``timeout`` seconds.  Raises ``SpawnerDied``."""
        if self.returncode is not None:
            return self.returncode
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return None
        reply = self._sock.recv(256)
        if not reply.startswith(b"exit "):
            self.close()
            raise SpawnerDied("the sandbox spawner ended while the program ran")
        self.returncode = int(reply[5:])
        self.close()
        return self.returncode

    def kill(self) -> None:
        """Kill the program's process group (the spawner does it: only it
        knows whether the pid is still the program's)."""
        if self.returncode is None:
            try:
                self._sock.send(b"kill")
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()


def _stop(parts: list) -> None:
    proc, control = parts
    if control is not None:
        control.close()  # the spawner sees EOF, kills its programs and exits
    if proc is not None:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
