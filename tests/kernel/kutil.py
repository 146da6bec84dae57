"""Helpers shared by the kernel tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Callable


def trigger() -> None:
    """The syscall most test programs count: getppid() from this process."""
    os.getppid()


def wait_for(cond: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll ``cond`` until it is true; fail naming ``what`` after ``timeout`` seconds.

    For effects that arrive asynchronously (a child process, another CPU);
    the timeout only bounds a failure, it never decides a pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Target:
    """A test binary that waits on stdin: ``call(n)`` writes n, it runs once
    (calling the traced function) and answers one integer line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.proc = subprocess.Popen([os.fspath(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def call(self, n: int) -> int:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()
