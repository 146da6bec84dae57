"""Trampoline that confines itself, then executes a tool (clang, bpftool).

Run by ``lcc_toolchain.sandbox`` as ``python -E -s -S -c "...main(sys.argv[1:])"
[OPTIONS] -- PROGRAM [ARGS...]`` (by hand: ``python -m lcc_toolchain.sandbox_exec``).
It is a separate process so that the confinement is applied by a
single-threaded program right before ``execve`` (the server is
multi-threaded, where ``preexec_fn`` is unsafe).  It imports as
little as possible (no json, no re): its start-up is paid on every compile.

OPTIONS (see ``encode_policy``): ``--cwd DIR``, ``--read PATH`` and
``--write PATH`` (repeated), ``--rlimit NAME=VALUE`` (NAME as in
``resource.RLIMIT_*``, lower case), ``--env NAME=VALUE`` (the program's whole
environment), ``--user UID:GID`` (run as that user, with no supplementary
groups), and the switches ``--landlock``, ``--netns``, ``--drop-caps``.

Steps, each failing closed: die with the parent, new network namespace
(best effort: needs CAP_SYS_ADMIN or user namespaces), resource limits,
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
                  user: tuple[int, int] | None = None) -> list[str]:
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
                                   ("--drop-caps", drop_caps)) if on]
    return [*args, "--"]


def decode_policy(argv: list[str]) -> tuple[dict, list[str]]:
    """(policy, program argv) from the trampoline's arguments."""
    policy: dict = {"read": [], "write": [], "rlimits": {}, "env": {},
                    "landlock": False, "netns": False, "drop_caps": False, "user": None}
    i = 0
    while i < len(argv):
        opt = argv[i]
        if opt == "--":
            return policy, argv[i + 1:]
        if opt in ("--landlock", "--netns", "--drop-caps"):
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
