"""A long-lived, single-threaded process that starts confined programs.

A multi-threaded caller (the compile service) may not confine a forked child
itself (Python code between ``fork`` and ``execve`` is unsafe there), and
starting a fresh Python per run (the trampoline) costs 10 ms and more on
every clang run.  ``Spawner`` starts one such Python once, the *spawner*,
and asks it over a Unix socket to fork for each run.  The spawner's child
applies ``sandbox_exec.main`` as the trampoline does (the same options, the
same steps, the same exit 125 on a failed step) and executes the program.

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
import signal
import socket
import subprocess
import sys
import threading
import weakref
from pathlib import Path

__all__ = ["Spawner", "SpawnerDied", "serve"]

_MAX_MESSAGE = 1 << 20  # the trampoline's arguments: a few KB in practice
_MAX_FD = 1 << 20
_SETUP_FAILED = 125


class SpawnerDied(OSError):
    """The spawner ended while it ran the program (the program was killed)."""


class Spawner:
    """The caller's side: starts the spawner on first use, restarts it when it
    died; safe to use from many threads at once."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        self._bootstrap = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
                           "from lcc_toolchain.spawner import serve; serve(int(sys.argv[1]))")
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


# -- the spawner process -------------------------------------------------------------

def serve(control_fd: int) -> None:
    """The spawner's loop (single-threaded, never returns)."""
    from lcc_toolchain import sandbox_exec  # noqa: F401 - imported once, before any fork

    control = socket.socket(fileno=control_fd)
    poller = select.poll()
    poller.register(control, select.POLLIN)
    runs: dict[int, tuple[int, socket.socket, int]] = {}  # fd -> (pid, reply socket, pidfd)
    by_sock: dict[int, int] = {}  # reply socket fd -> pidfd
    try:
        while True:
            for fd, _events in poller.poll():
                if fd == control_fd:
                    if not _accept(control, poller, runs, by_sock):
                        return
                elif fd in runs:  # a program ended
                    pid, reply, pidfd = runs.pop(fd)
                    poller.unregister(pidfd)
                    if by_sock.pop(reply.fileno(), None) is not None:
                        poller.unregister(reply)
                    os.close(pidfd)
                    _, status = os.waitpid(pid, 0)
                    try:
                        reply.send(b"exit %d" % os.waitstatus_to_exitcode(status))
                    except OSError:
                        pass
                    reply.close()
                elif fd in by_sock:  # "kill", or the caller went away
                    pid, reply, _ = runs[by_sock.pop(fd)]
                    try:
                        reply.recv(16)
                    except OSError:
                        pass
                    _kill(pid)
                    poller.unregister(fd)  # its exit is reported through the pidfd
    finally:
        for pid, _, _ in runs.values():
            _kill(pid)
        os._exit(0)


def _accept(control: socket.socket, poller, runs: dict, by_sock: dict) -> bool:
    """Fork for one request; False once the caller closed the control socket."""
    try:
        data, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, 3)
    except OSError:
        return False
    if not data and not fds:
        return False
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return True
    reply = socket.socket(fileno=fds[0])
    args = [os.fsdecode(a) for a in data.split(b"\0")]
    try:
        pid = os.fork()
    except OSError as exc:
        reply.send(f"error cannot fork: {exc.strerror}".encode())
        reply.close()
        os.close(fds[1])
        os.close(fds[2])
        return True
    if pid == 0:
        _child(args, fds[1], fds[2])
    os.close(fds[1])
    os.close(fds[2])
    pidfd = os.pidfd_open(pid)
    runs[pidfd] = (pid, reply, pidfd)
    by_sock[reply.fileno()] = pidfd
    poller.register(pidfd, select.POLLIN)
    poller.register(reply, select.POLLIN)
    reply.send(b"pid %d" % pid)
    return True


def _child(args: list[str], stdout: int, stderr: int) -> None:
    """In the forked child: the standard descriptors, a session of its own,
    nothing else inherited; then confine and execute.  Never returns."""
    try:
        from lcc_toolchain import sandbox_exec
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.closerange(3, _MAX_FD)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sandbox_exec.main(args)
    finally:
        os._exit(_SETUP_FAILED)


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
