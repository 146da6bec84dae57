"""Helpers for the example tools' tests: import a tool, or run it as a process.

``load_example("tcpconnlat")`` imports ``examples/tcpconnlat/tcpconnlat.py``
as a module.  :class:`ToolProcess` starts a tool's command line, waits until
it says it is tracing, collects its stdout (JSON lines with ``--json``) and
stops it with SIGTERM as a user's Ctrl-C would.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: What every tool prints on stderr once its programs are attached.
READY = "Hit Ctrl-C to end."


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>/<name>.py`` (once per test session)."""
    modname = f"lcc_example_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, EXAMPLES / name / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def wait_until(predicate: Callable[[], Any], timeout: float, step: Callable[[], Any] | None = None,
               what: str = "condition") -> Any:
    """Call ``step()`` then ``predicate()`` until it is truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        if step is None:
            time.sleep(0.02)


class ToolProcess:
    """``python3 examples/<tool>/<tool>.py ARGS`` with its output collected by threads.

    ``prefix`` is put before that command line, e.g. ``["ip", "netns", "exec", NS]``
    to run the tool inside a network namespace.
    """

    def __init__(self, tool: str, *args: str, prefix: Sequence[str] = (),
                 ready_timeout: float = 120.0) -> None:
        self.tool = tool
        self.argv = [*prefix, sys.executable, str(EXAMPLES / tool / f"{tool}.py"), *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr),
                                          daemon=True)]
        for t in self._threads:
            t.start()
        try:
            where = f" under {' '.join(prefix)}" if prefix else ""
            self.wait_for(lambda: any(READY in ln for ln in self.stderr), ready_timeout,
                          what=f"{tool} to start tracing{where}")
        except BaseException:
            self.kill()
            raise

    def _pump(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str = "output") -> Any:
        """Wait until ``predicate()`` is truthy; fails if the tool exits first or on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(f"{self.tool} exited ({self.proc.returncode}) "
                                         f"before {what}; stderr:\n" + "\n".join(self.stderr))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         "stderr:\n" + "\n".join(self.stderr))
                self._cond.wait(min(left, 0.2))

    def json(self) -> list[dict[str, Any]]:
        """stdout lines parsed as JSON (every line must be JSON)."""
        with self._cond:
            return [json.loads(ln) for ln in self.stdout if ln.strip()]

    def wait_json(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                  what: str = "a JSON event") -> list[dict[str, Any]]:
        """Wait until some JSON line satisfies ``predicate``; returns all that do."""
        return self.wait_for(lambda: [o for o in self.json() if predicate(o)], timeout, what)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit and for all output; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.tool} did not exit within {timeout}s of signal {sig}")
        for t in self._threads:
            t.join(timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "ToolProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
