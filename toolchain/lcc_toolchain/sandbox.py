"""Run an untrusted-input tool (clang, bpftool) in a confined child process.

``Sandbox.run(argv, cwd=..., read=..., write=...)`` starts the program through
``lcc_toolchain.sandbox_exec``, which confines a process and then executes the
program, with

- an empty environment (the caller may pass a small explicit one),
- rlimits: CPU time, address space, output file size, open files, processes,
- a wall-clock timeout, after which the whole process group is killed,
- Landlock: reads only under the toolchain directories plus ``read``,
  writes only under ``write``, no TCP, no abstract unix sockets,
- a new network namespace when the kernel lets us create one,
- no capabilities and ``no_new_privs``,
- with ``user=(uid, gid)``, that user and no supplementary groups (the
  server, when root, runs its tools as ``nobody``); the ``write`` directories
  are handed to that user before the run, and the program sees a root
  directory holding only its read and write paths (``--private-root``): to
  it, other host paths do not exist, rather than exist unreadable.

When Landlock is unavailable the sandbox logs one warning and keeps every
other limit; ``Sandbox.unconfined`` then says why, so that a caller facing
untrusted input (the compile service) can refuse to run anything.
``Sandbox(enabled=False)`` runs the program directly with the
same environment, limits and timeout but no Landlock, namespace or capability
changes (for hosts that forbid them).  ``probe`` (default
``landlock.abi_version``) tells which Landlock ABI the kernel offers; tests
pass one answering 0.
How the confining process starts: the confinement must be applied by a
single-threaded process right before ``execve``.  A single-threaded caller
(``lcc compile``: this process has one thread, as ``/proc/self/task`` shows)
forks, and the child applies ``sandbox_exec.main`` itself, never returning to
the caller's code: whatever happens, it executes the program confined or exits
125.  A multi-threaded caller (the service) asks its spawner
(``lcc_toolchain.spawner``, one single-threaded Python started on first use)
to fork a child that does the same; with ``spawner=False`` it starts a fresh
Python running the trampoline per run (``python -S -c``, 10 ms and more), as
``Sandbox(fork=False, spawner=False)`` always does.  ``close()`` stops the
spawner.
The outcome is a ``Completed``; ``Completed.exceeded`` names the limit that
stopped the program, if any, and ``Completed.started`` how it was started.
``run(..., cancel=event)`` kills the program when the ``threading.Event`` is
set (its client went away) and raises ``Cancelled``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lcc_toolchain import landlock, sandbox_exec
from lcc_toolchain.errors import ToolchainError
from lcc_toolchain.spawner import Spawner, SpawnerDied
from lcc_toolchain.sandbox_exec import encode_policy

__all__ = ["Cancelled", "Completed", "Limits", "Sandbox", "SandboxError", "SYSTEM_READ_PATHS"]

log = logging.getLogger("lcc_toolchain.sandbox")

# What a dynamically linked toolchain needs to start.
SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin",
                     "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d")

#: Bytes of a program's stdout/stderr read back (the rest is dropped).
MAX_CAPTURE = 1 << 20

_SETUP_FAILED = 125
_EXEC_FAILED = 127
_MAX_FD = 1 << 20


class SandboxError(ToolchainError, RuntimeError):
    """The sandbox itself could not be set up (not the program's failure).  A
    ``ToolchainError``, so that whichever tool run meets it (clang, bpftool,
    the PCH build) the service answers 503 ``unavailable``, never 500."""


class Cancelled(Exception):
    """The run was cancelled (``cancel`` set) and the program killed."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 64 << 20
    open_files: int = 256
    processes: int = 0  # clang -c runs cc1 in-process; nothing may fork
    wall_seconds: float = 30.0

    def rlimits(self) -> dict[str, int]:
        return {"cpu": self.cpu_seconds, "as": self.memory_bytes,
                "fsize": self.file_size_bytes, "nofile": self.open_files,
                "nproc": self.processes, "core": 0}


@dataclass
class Completed:
    """The outcome of a sandboxed run."""

    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    exceeded: str | None = None  # "CPU time", "wall-clock time", "memory", "output size"
    started: str = "trampoline"  # or "fork", "spawner": how the confining process started

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.exceeded is None


@dataclass
class Sandbox:
    """Runs programs confined; one instance is shared by many threads."""

    enabled: bool = True
    limits: Limits = field(default_factory=Limits)
    python: str = sys.executable
    extra_read: tuple[str, ...] = ()
    probe: Callable[[], int] = landlock.abi_version
    user: tuple[int, int] | None = None
    fork: bool = True  # fork instead of starting the trampoline when single-threaded
    spawner: bool = True  # else ask the spawner to fork, rather than start the trampoline

    def __post_init__(self) -> None:
        self.landlock_abi = self.probe() if self.enabled else 0
        if self.enabled and self.landlock_abi == 0:
            log.warning("Landlock is not available on this kernel: compilers run with "
                        "resource limits, an empty environment and no capabilities, but "
                        "without filesystem confinement")
        # The trampoline is imported from where this package lives, whatever
        # sys.path the server has; -c starts faster than -m (no runpy).
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        self._bootstrap = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
                           "from lcc_toolchain.sandbox_exec import main; main(sys.argv[1:])")
        self._spawner: Spawner | None = None
        self._spawner_lock = threading.Lock()

    def close(self) -> None:
        """Stop the spawner, if one was started (a later run starts another)."""
        with self._spawner_lock:
            spawner, self._spawner = self._spawner, None
        if spawner is not None:
            spawner.close()

    def start(self) -> None:
        """Start the spawner now, if this (multi-threaded) caller will use
        one, rather than on the first run.  Raises ``SandboxError``."""
        if (spawner := self._the_spawner()) is not None and not _single_threaded():
            try:
                spawner.start()
            except OSError as exc:
                raise SandboxError(f"lcc-sandbox: the spawner could not start: {exc}") \
                    from None

    def _the_spawner(self) -> Spawner | None:
        if not self.spawner or not _spawner_usable():
            return None
        with self._spawner_lock:
            if self._spawner is None:
                self._spawner = Spawner(self.python)
            return self._spawner

    @property
    def unconfined(self) -> str | None:
        """Why programs would run without filesystem confinement, or None when
        Landlock confines them."""
        if not self.enabled:
            return "the compiler sandbox is disabled (LCC_SANDBOX=0)"
        if self.landlock_abi < 1:
            return ("Landlock is not available on this kernel (needs Linux 5.13 or later "
                    "with CONFIG_SECURITY_LANDLOCK=y and landlock in the lsm= boot list)")
        return None

    def toolchain_paths(self, *programs: str) -> list[str]:
        """Read paths a program needs besides the system ones: the tree it is
        installed in when that is outside /usr (e.g. /opt/llvm)."""
        out = []
        for prog in programs:
            found = shutil.which(prog)
            if not found:
                continue
            root = Path(found).resolve().parent.parent
            if str(root) != "/" and not str(root).startswith("/usr"):
                out.append(str(root))
        return out

    def run(self, argv: list[str], *, cwd: Path, read: Iterable[str | os.PathLike] = (),
            write: Iterable[str | os.PathLike] = (), env: Mapping[str, str] | None = None,
            stdout_path: Path | None = None, limits: Limits | None = None,
            cancel: threading.Event | None = None) -> Completed:
        """Run ``argv`` confined; ``argv[0]`` must be an absolute path.

        ``stdout_path`` receives the program's output; otherwise its first
        ``MAX_CAPTURE`` bytes come back in ``Completed.stdout`` (stderr alike).
        Raises ``SandboxError`` when the confinement could not be applied,
        ``Cancelled`` when ``cancel`` was set before the program ended.
        """
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled before start")
        limits = limits or self.limits
        options = encode_policy(
            cwd=str(cwd), read=[*SYSTEM_READ_PATHS, *self.extra_read, *map(str, read)],
            write=list(map(str, write)), rlimits=limits.rlimits(), env=env,
            landlock=self.enabled and self.landlock_abi > 0,
            netns=self.enabled, drop_caps=self.enabled, user=self.user,
            private_root=self.enabled and self.user is not None)
        if self.user is not None:
            for path in write:  # fresh directories made for this run
                os.chown(path, *self.user)
        forked = self.fork and _single_threaded()
        spawner = None if forked else self._the_spawner()
        # Output goes to files, not pipes: the file-size limit then bounds it
        # too, and only its head is read back into this process.
        with contextlib.ExitStack() as files:
            out_f = files.enter_context(open(stdout_path, "wb") if stdout_path  # noqa: SIM115
                                        else tempfile.TemporaryFile())
            err_f = files.enter_context(tempfile.TemporaryFile())
            if spawner is not None:
                returncode = _spawned(spawner, [*options, *argv], out_f, err_f,
                                      limits.wall_seconds, cancel)
            else:
                returncode = self._popen(argv, options, forked, cwd, out_f, err_f,
                                         limits.wall_seconds, cancel)
            timed_out = returncode is None
            if timed_out and cancel is not None and cancel.is_set():
                raise Cancelled(f"{Path(argv[0]).name} killed: its request was cancelled")
            out = b"" if stdout_path else _head(out_f)
            err = _head(err_f)
        started = "fork" if forked else "spawner" if spawner is not None else "trampoline"
        done = Completed(returncode if returncode is not None else -signal.SIGKILL,
                         out or b"", err or b"", started=started)
        if timed_out:
            done.exceeded = "wall-clock time"
        else:
            done.exceeded = _exceeded(done.returncode, done.stderr)
        if done.returncode == _SETUP_FAILED and err.startswith(b"lcc-sandbox:"):
            raise SandboxError(err.decode(errors="replace").strip())
        return done

    def _popen(self, argv: list[str], options: list[str], forked: bool, cwd: Path,
               out_f, err_f, wall_seconds: float,
               cancel: threading.Event | None) -> int | None:
        """Run by forking this process or starting the trampoline; the return
        code, or None when killed for the wall-clock limit or ``cancel``."""
        if forked:
            # Popen forks and calls _confine_and_exec in the child, which
            # executes the program itself: Popen's own exec of ``cmd`` is
            # never reached.
            cmd, child = [argv[0]], functools.partial(_confine_and_exec, [*options, *argv])
        else:
            cmd = [self.python, "-E", "-s", "-S", "-c", self._bootstrap, *options, *argv]
            child = None
        proc = subprocess.Popen(  # noqa: S603 - argv is built by lcc, never by a request
            cmd, cwd=str(cwd), env={}, stdin=subprocess.DEVNULL, stdout=out_f,
            stderr=err_f, start_new_session=True, preexec_fn=child)  # noqa: PLW1509
        if not _wait(proc, wall_seconds, cancel):
            _kill_group(proc.pid)
            proc.wait()
            return None
        return proc.returncode


def _spawned(spawner: Spawner, args: list[str], out_f, err_f, wall_seconds: float,
             cancel: threading.Event | None) -> int | None:
    """Run through the spawner; the return code, or None when killed for the
    wall-clock limit or ``cancel``.  Raises ``SandboxError`` when the spawner
    cannot run it (the request fails, as when confinement fails)."""
    try:
        run = spawner.launch(args, out_f.fileno(), err_f.fileno())
    except OSError as exc:
        raise SandboxError(f"lcc-sandbox: the spawner could not start the program: {exc}") \
            from None
    try:
        deadline = time.monotonic() + wall_seconds
        while True:
            left = deadline - time.monotonic()
            step = left if cancel is None else min(left, 0.05)
            code = run.wait(max(0.0, step))
            if code is not None:
                return code
            if left <= step or (cancel is not None and cancel.is_set()):
                run.kill()
                run.wait(None)
                return None
    except SpawnerDied as exc:
        raise SandboxError(f"lcc-sandbox: {exc}") from None
    finally:
        run.close()


@functools.cache
def _spawner_usable() -> bool:
    """Whether this process may open pidfds (Linux 5.3; a seccomp filter may
    refuse them), which the spawner watches its programs with; else the
    trampoline is used."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _single_threaded() -> bool:
    """Whether this process has one thread (Python's or any other), so that a
    forked child may run Python code before it executes a program."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _confine_and_exec(argv: list[str]) -> None:
    """In the child Popen forked: close every inherited descriptor but the
    standard ones, then confine and execute (``sandbox_exec.main``, which
    executes the program or exits 125/127).  It never returns: Popen would
    otherwise execute the program unconfined."""
    try:
        os.closerange(3, _MAX_FD)
        sandbox_exec.main(argv)
    finally:
        os._exit(_SETUP_FAILED)


def _head(f, limit: int = MAX_CAPTURE) -> bytes:
    f.seek(0)
    data = f.read(limit + 1)
    if len(data) > limit:
        return data[:limit] + b"\n[... output cut]\n"
    return data


def _wait(proc: subprocess.Popen, timeout: float, cancel: threading.Event | None = None) -> bool:
    """Wait for ``proc`` to exit; False after ``timeout`` seconds or, checked
    every 50 ms, once ``cancel`` is set.

    Uses a pidfd where the kernel has one: ``Popen.wait(timeout)`` polls with
    sleeps of up to 50 ms, which would add that much to every compile.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            step = left if cancel is None else min(left, 0.05)
            ready = poller.poll(max(0, int(step * 1000)))
            if ready or left <= step or (cancel is not None and cancel.is_set()):
                break
    finally:
        os.close(fd)
    if not ready:
        return False
    proc.wait()
    return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _exceeded(returncode: int, stderr: bytes) -> str | None:
    """Which limit a dead program hit, judged from how it died."""
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "CPU time"
    if returncode == -signal.SIGXFSZ or (returncode != 0 and b"File too large" in stderr):
        return "output size"
    if returncode != 0 and (b"out of memory" in stderr.lower() or b"bad_alloc" in stderr
                            or b"Cannot allocate memory" in stderr):
        return "memory"
    return None
