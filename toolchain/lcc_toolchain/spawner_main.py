"""The spawner process (see ``lcc_toolchain.spawner``): one single-threaded
Python that forks a confined child per request.

Started as ``python -E -s -S -c "...serve(FD)" FD`` with FD its end of the
control socket.  Like ``sandbox_exec`` it imports as little as possible (C
modules; not ``socket``, ``signal`` or ``array``, which pull in ``enum``
or ``collections``): a one-off
``lcc compile`` may start it for a single run.
"""

from __future__ import annotations

import _signal
import _socket
import os
import select
import sys

from lcc_toolchain import sandbox_exec

_MAX_MESSAGE = 1 << 20  # the trampoline's arguments: a few KB in practice
_MAX_FD = 1 << 20
_FDS = 3  # reply socket, stdout, stderr


def serve(control_fd: int) -> None:
    """The loop: a request on the control socket forks a child; a child's end
    (its pidfd) is reported on its reply socket; ``kill`` or a closed reply
    socket kills it.  Exits, killing its children, when the control socket
    closes.  Never returns."""
    control = _socket.socket(fileno=control_fd)
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    runs: dict[int, tuple[int, _socket.socket]] = {}  # pidfd -> (pid, reply socket)
    listening: dict[int, int] = {}  # reply socket fd -> pidfd, until "kill" or hang-up
    try:
        while True:
            for fd, _events in poller.poll():
                if fd == control_fd:
                    if not _accept(control, poller, runs, listening):
                        return
                elif fd in runs:  # a program ended
                    pid, reply = runs.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    if listening.pop(reply.fileno(), None) is not None:
                        poller.unregister(reply.fileno())
                    _, status = os.waitpid(pid, 0)
                    try:
                        reply.send(b"exit %d" % os.waitstatus_to_exitcode(status))
                    except OSError:
                        pass
                    reply.close()
                elif fd in listening:  # "kill", or the caller went away
                    pid, reply = runs[listening.pop(fd)]
                    try:
                        reply.recv(16)
                    except OSError:
                        pass
                    _kill(pid)
                    poller.unregister(fd)  # its end is reported through the pidfd
    finally:
        for pid, _ in runs.values():
            _kill(pid)
        os._exit(0)


def _accept(control: _socket.socket, poller, runs: dict, listening: dict) -> bool:
    """Fork for one request; False once the caller closed the control socket."""
    fds: list[int] = []
    try:
        data, ancdata, flags, _ = control.recvmsg(_MAX_MESSAGE, _socket.CMSG_LEN(_FDS * 4))
    except OSError:
        return False
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(payload) - len(payload) % 4, 4)]
    if not data and not fds:
        return False
    if len(fds) != _FDS or flags & (_socket.MSG_CTRUNC | _socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        return True
    reply = _socket.socket(fileno=fds[0])
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
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:  # cannot watch it: it must not run
        _kill(pid)
        os.waitpid(pid, 0)
        reply.send(f"error cannot watch the program: {exc.strerror}".encode())
        reply.close()
        return True
    runs[pidfd] = (pid, reply)
    listening[reply.fileno()] = pidfd
    poller.register(pidfd, select.POLLIN)
    poller.register(reply.fileno(), select.POLLIN)
    reply.send(b"pid %d" % pid)
    return True


def _child(args: list[str], stdout: int, stderr: int) -> None:
    """In the forked child: the standard descriptors, a session of its own,
    nothing else inherited; then confine and execute.  Never returns."""
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.closerange(3, _MAX_FD)
        os.setsid()
        sandbox_exec.main(args)
    finally:
        os._exit(sandbox_exec.SETUP_FAILED)


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, _signal.SIGKILL)
        except OSError:
            pass
