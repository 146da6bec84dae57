"""Trampoline that confines itself, then executes a tool (clang, bpftool).

Run by ``lcc_toolchain.sandbox`` as ``python -E -s -S -c "...main(sys.argv[1:])"
[OPTIONS] -- PROGRAM [ARGS...]`` (by hand: ``python -m lcc_toolchain.sandbox_exec``).
It is a separate process so that the confinement is applied by a
single-threaded program right before ``execve`` (the server is
multi-threaded, where ``preexec_fn`` is unsafe).  It imports as
little as possible (no json, no re): its start-up is paid on every compile.
A caller that is single-threaded itself (``lcc compile``) forks instead and
calls ``main`` in the child (``sandbox._confine_and_exec``): the same steps.

OPTIONS (see ``encode_policy``): ``--cwd DIR``, ``--read PATH`` and
``--write PATH`` (repeated), ``--rlimit NAME=VALUE`` (NAME as in
``resource.RLIMIT_*``, lower case), ``--env NAME=VALUE`` (the program's whole
environment), ``--user UID:GID`` (run as that user, with no supplementary
groups), and the switches ``--landlock``, ``--netns``, ``--drop-caps``,
``--private-root`` (needs root: a mount namespace whose root holds only the
``--read`` and ``--write`` paths, so that every other path of the host does not
exist for the program, as opposed to existing and being unreadable).

Steps, each failing closed: die with the parent, private root, new network
namespace (best effort: needs CAP_SYS_ADMIN or user namespaces), resource limits,
Landlock, empty the capability bounding set, become ``--user``, the process
limit (after the user change: the kernel refuses an exec by a user already
over it), drop every capability, exec.  A setup failure exits 125 with one
line ``lcc-sandbox: ...`` on stderr; a failed exec exits 127.
"""

from __future__ import annotations

import _signal  # the C module: ``signal`` would pull in enum, too slow to import here
import os
import resource
import sys

from lcc_toolchain import _syscalls, landlock

SETUP_FAILED = 125
EXEC_FAILED = 127

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 1, 2, 4, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


def _fail(message: str) -> None:
    os.write(2, f"lcc-sandbox: {message}\n".encode())
    os._exit(SETUP_FAILED)


def _new_netns() -> None:
    """Leave the host's network; fine to skip, Landlock denies TCP anyway."""
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        try:
            _syscalls.unshare(flags)
            return
        except OSError:
            continue


def private_root(cwd: str, read: list[str], write: list[str]) -> None:
    """Make ``cwd`` (a fresh directory of this run) the root of a new mount
    namespace holding only ``read`` (read-only) and ``write`` at their own
    paths, then enter it.  Symbolic links among them (``/lib`` -> ``usr/lib``)
    are recreated as links."""
    _syscalls.unshare(_CLONE_NEWNS)
    _syscalls.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Everything is looked up before the new root hides cwd's contents.
    plan = []  # (path, fd or None, link target or None, writable, is_dir)
    for paths, writable in ((read, False), (write, True)):
        for path in paths:
            path = os.path.abspath(path)
            try:
                if os.path.islink(path):
                    plan.append((path, None, os.readlink(path), writable, False))
                    continue
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            plan.append((path, fd, None, writable, os.path.isdir(path)))
    plan.sort(key=lambda p: p[0].count("/"))
    root = os.path.abspath(cwd)
    _syscalls.mount("lcc-root", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    for path, fd, link, writable, is_dir in plan:
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if link is not None:
            if not os.path.lexists(target):
                os.symlink(link, target)
            continue
        if is_dir:
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        # Not recursive: the new root is mounted on cwd, itself one of the paths.
        _syscalls.mount(f"/proc/self/fd/{fd}", target, None, _MS_BIND)
        flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
        _syscalls.mount(None, target, None, flags if writable else flags | _MS_RDONLY)
        os.close(fd)
    os.chroot(root)
    os.chdir(cwd)


def _drop_bounding_set() -> None:
    # Needs CAP_SETPCAP, so it is best effort; with no_new_privs and empty
    # process sets an exec cannot regain capabilities anyway.
    for cap in range(64):
        try:
            _syscalls.prctl(_PR_CAPBSET_DROP, cap)
        except OSError:
            break


def switch_user(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` with no supplementary groups, for good.

    Raises ``OSError`` when any step fails or root could be regained.
    """
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (uid, uid, gid, gid) \
            or os.getgroups() not in ([], [gid]):
        raise OSError(f"could not become {uid}:{gid}")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError("root could be regained after the user change")


def encode_policy(*, cwd: str, read=(), write=(), rlimits=None, env=None,
                  landlock: bool = True, netns: bool = True, drop_caps: bool = True,
                  user: tuple[int, int] | None = None, private_root: bool = False) -> list[str]:
    """The OPTIONS for a policy, ending with ``--`` (PROGRAM follows)."""
    args = ["--cwd", cwd]
    if user is not None:
        args += ["--user", f"{int(user[0])}:{int(user[1])}"]
    for path in read:
        args += ["--read", str(path)]
    for path in write:
        args += ["--write", str(path)]
    for name, value in (rlimits or {}).items():
        args += ["--rlimit", f"{name}={int(value)}"]
    for name, value in (env or {}).items():
        args += ["--env", f"{name}={value}"]
    args += [flag for flag, on in (("--landlock", landlock), ("--netns", netns),
                                   ("--drop-caps", drop_caps),
                                   ("--private-root", private_root)) if on]
    return [*args, "--"]


def decode_policy(argv: list[str]) -> tuple[dict, list[str]]:
    """(policy, program argv) from the trampoline's arguments."""
    policy: dict = {"read": [], "write": [], "rlimits": {}, "env": {},
                    "landlock": False, "netns": False, "drop_caps": False, "user": None,
                    "private_root": False}
    i = 0
    while i < len(argv):
        opt = argv[i]
        if opt == "--":
            return policy, argv[i + 1:]
        if opt in ("--landlock", "--netns", "--drop-caps", "--private-root"):
            policy[opt[2:].replace("-", "_")] = True
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ValueError(f"{opt} needs a value")
        value = argv[i + 1]
        if opt == "--cwd":
            policy["cwd"] = value
        elif opt == "--user":
            uid, _, gid = value.partition(":")
            policy["user"] = (int(uid), int(gid))
        elif opt in ("--read", "--write"):
            policy[opt[2:]].append(value)
        elif opt in ("--rlimit", "--env"):
            name, _, val = value.partition("=")
            if opt == "--rlimit":
                policy["rlimits"][name] = int(val)
            else:
                policy["env"][name] = val
        else:
            raise ValueError(f"unknown option {opt}")
        i += 2
    raise ValueError("missing -- before the program")


def apply(policy: dict) -> None:
    """Confine this process as ``policy`` says (see the module docstring)."""
    _syscalls.prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, and
    # the tool must die of a full output file like any program would.
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    if policy["private_root"]:
        private_root(policy.get("cwd", "/"), policy["read"], policy["write"])
    if policy["netns"]:
        _new_netns()
    rlimits = dict(policy["rlimits"])
    nproc = rlimits.pop("nproc", None)
    for name, value in rlimits.items():
        limit = getattr(resource, f"RLIMIT_{name.upper()}")
        resource.setrlimit(limit, (value, value))
    if policy["landlock"]:
        landlock.restrict(read=policy["read"], write=policy["write"])
    if policy["drop_caps"]:
        _drop_bounding_set()
    if policy["user"] is not None:
        switch_user(*policy["user"])
    if nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if policy["drop_caps"]:
        _syscalls.capset_clear()


def main(argv: list[str]) -> None:
    try:
        policy, program = decode_policy(argv)
        if not program:
            raise ValueError("no program to run")
        os.chdir(policy.get("cwd", "/"))
        apply(policy)
    except Exception as exc:  # noqa: BLE001 - any failure must stop before exec
        _fail(f"{type(exc).__name__}: {exc}")
    try:
        os.execve(program[0], program, policy["env"])
    except OSError as exc:
        os.write(2, f"lcc-sandbox: cannot execute {program[0]}: {exc.strerror}\n".encode())
        os._exit(EXEC_FAILED)


if __name__ == "__main__":
    main(sys.argv[1:])
