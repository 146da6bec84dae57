"""Network namespaces for end-to-end tests: create, run inside, open sockets inside, remove.

Every name starts with ``lcct-`` and carries the test process's pid, so that
parallel runs do not collide and a leftover is easy to spot
(``ip netns list | grep lcct-``).  Addresses come from 198.18.0.0/15, the
benchmarking range, so test traffic never leaves the machine.

    with namespaces("a", "b") as (a, b):
        veth_pair(a, b, "198.18.0.1/30", "198.18.0.2/30")
        a.run("ip", "addr")                        # a command inside a
        s = a.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a socket that lives in a

Requires root and iproute2.  Namespaces are removed on exit from the
context manager even when the test fails; processes the test started inside
must be ended by the test first (``ip netns delete`` does not kill them).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from typing import Iterator, Sequence

PREFIX = "lcct-"
NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000

_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


class Netns:
    """One named network namespace (``ip netns``), owned by the test that made it."""

    def __init__(self, name: str) -> None:
        if not name.startswith(PREFIX):
            raise ValueError(f"test namespaces are named {PREFIX}*, not {name!r}")
        self.name = name

    @classmethod
    def create(cls, tag: str) -> Netns:
        """Make ``lcct-<tag>-<pid>`` with its loopback up."""
        ns = cls(f"{PREFIX}{tag}-{os.getpid()}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    @property
    def inode(self) -> int:
        """The namespace's inode number, as the kernel's ``net->ns.inum``."""
        return os.stat(self.path).st_ino

    def command(self, *argv: str) -> list[str]:
        """``argv`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the namespace and wait for it; raises on failure when ``check``."""
        r = subprocess.run(self.command(*argv), capture_output=True, text=True, check=False,
                           timeout=timeout, input=input)
        if check and r.returncode:
            raise RuntimeError(f"{' '.join(argv)} in {self.name} failed ({r.returncode}): "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return r

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a command inside the namespace (``subprocess.Popen`` arguments)."""
        return subprocess.Popen(self.command(*argv), **kw)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM,
               proto: int = 0) -> socket.socket:
        """A socket created inside the namespace; it stays there whoever uses it.

        The namespace is entered by a short-lived thread of our own, so the
        test process itself never changes namespace.
        """
        out: dict[str, object] = {}

        def make() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                out["sock"] = socket.socket(family, type, proto)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                out["error"] = e

        t = threading.Thread(target=make, name=f"setns-{self.name}")
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]  # type: ignore[misc]
        return out["sock"]  # type: ignore[return-value]

    def delete(self) -> None:
        """Remove the namespace (its devices go with it). Idempotent."""
        if os.path.exists(self.path):
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"


@contextlib.contextmanager
def namespaces(*tags: str) -> Iterator[list[Netns]]:
    """Create one namespace per tag; remove all of them on exit, whatever happened."""
    made: list[Netns] = []
    try:
        for tag in tags:
            made.append(Netns.create(tag))
        yield made
    finally:
        for ns in made:
            ns.delete()


def veth_pair(a: Netns, b: Netns, addr_a: str, addr_b: str, *,
              name_a: str = "lcct-a0", name_b: str = "lcct-b0") -> tuple[str, str]:
    """Join ``a`` and ``b`` with a veth pair, give each end an address, bring both up.

    Device names only need to be unique inside each namespace.  Returns the
    two device names.
    """
    subprocess.run(["ip", "-n", a.name, "link", "add", name_a, "type", "veth",
                    "peer", "name", name_b, "netns", b.name], check=True, capture_output=True)
    for ns, dev, addr in ((a, name_a, addr_a), (b, name_b, addr_b)):
        ns.run("ip", "addr", "add", addr, "dev", dev)
        ns.run("ip", "link", "set", dev, "up")
    return name_a, name_b


def leftovers() -> list[str]:
    """Test namespaces of this process that still exist (for a teardown check)."""
    suffix = f"-{os.getpid()}"
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(PREFIX) and n.endswith(suffix))
