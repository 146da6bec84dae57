"""Scripts written the way pyLCC's guides are, run unchanged against the kernel.

Each script in ``pylcc_scripts/`` starts with ``from pylcc.lbcBase import
...`` and runs as ``python script.py ARGS`` in a child process, with lcc's
``client/`` first on ``PYTHONPATH`` (where the ``pylcc`` compatibility
package lives).  A script prints "ready" once its programs are attached;
the test then makes the events (syscalls from the test's own pid, forks, a
call into a binary built here), reads what the script prints, and stops it
with SIGINT as a user's Ctrl-C would.  Every script must exit with status 0
and print no traceback.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lcc import features

pytestmark = pytest.mark.bpf

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "pylcc_scripts"
CLIENT = HERE.parents[1] / "client"


class Script:
    """A pyLCC script running in a child process; its output read line by line."""

    def __init__(self, name: str, *args: object, cwd: Path | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"  # scripts print without flush, as pyLCC's do
        env["COLUMNS"] = "60"  # showHist's width
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(SCRIPTS / name), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_err(self) -> None:
        self._err.extend(self.proc.stderr)  # type: ignore[union-attr]

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """The next line that matches ``pattern`` (a regex); fails on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within "
                                     f"{timeout}s; output so far: {self.lines}") from None
            if line is None:
                self.proc.wait()
                raise AssertionError(f"{self.name} ended (status {self.proc.returncode}) "
                                     f"before printing {pattern!r}; output: {self.lines}\n"
                                     f"{self.stderr}")
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def ready(self) -> None:
        self.expect(r"^ready")

    def in_wait_interrupt(self, timeout: float = 30) -> None:
        """Wait until the script is inside waitInterrupt(): it catches SIGTERM then
        (Python catches SIGINT from the start, so that signal would not tell)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(f"/proc/{self.proc.pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f
                              if line.startswith("SigCgt:"))
            if caught >> (signal.SIGTERM - 1) & 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never reached waitInterrupt()")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30, *,
             waiting: bool = True) -> list[str]:
        """Send ``sig`` (once the script waits in waitInterrupt(), unless ``waiting``
        is False), wait for the exit (status 0, no traceback); return every line."""
        if waiting:
            self.in_wait_interrupt()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop on signal {sig}; "
                                 f"output: {self.lines}") from None
        return self.finish(rc)

    def finish(self, rc: int, expected: int = 0) -> list[str]:
        for t in self._readers:
            t.join(10)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        assert rc == expected, f"{self.name} exited with {rc}\n{self.stderr}"
        if expected == 0:
            assert "Traceback" not in self.stderr, self.stderr
        return self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def script(lcc_cache):
    """Start a script; whatever is left running is killed after the test."""
    started: list[Script] = []

    def start(name: str, *args: object, **kw) -> Script:
        s = Script(name, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def test_pylcc_imports_resolve_to_lcc(lcc_cache):
    code = ("import pylcc.lbcBase, pylcc.lbcMaps, pylcc.lbcStack, pylcc.perfEvent, lcc;"
            "print(pylcc.__file__);"
            "print(pylcc.lbcBase.ClbcBase is lcc.ClbcBase)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(CLIENT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert Path(out[0]).resolve() == CLIENT / "pylcc" / "__init__.py"
    assert out[1] == "True"


def test_events_through_ceventthread(script):
    s = script("event_out.py", os.getpid())
    s.ready()
    children = [subprocess.Popen(["true"]) for _ in range(3)]
    for c in children:
        c.wait()
    # events of different CPUs come in any order
    pattern = rf"^cpu: \d+ parent pid:{os.getpid()}, comm:\S+\. fork child pid: (\d+), comm: \S+$"
    seen = {int(s.expect(pattern).group(1)) for _ in children}
    assert seen == {c.pid for c in children}
    lines = s.stop()
    assert lines[-1] == "events: 3"


def test_hash_map_dump(script):
    s = script("hash_map.py", os.getpid())
    s.ready()
    for _ in range(4):
        os.getppid()
    s.expect(rf"^pid {os.getpid()} called getppid 4 times$")
    lines = s.stop()
    assert lines[-1] == f"{{{os.getpid()}: 4}}"  # get(): a dict, as pyLCC prints it


def test_call_stacks_and_a_missing_stack_id(script):
    s = script("call_stack.py", os.getpid())
    s.ready()
    os.getppid()
    s.expect("^call trace:$")
    names = s.expect(r"^names: (.*)$").group(1).split()
    assert "do_syscall_64" in names  # getKStacks: function names
    bad = s.expect(r"^bad id: ").string
    assert bad == "bad id: ['[no stack: error -14 (EFAULT)]'] [] None"
    lines = s.stop()
    trace = lines[lines.index("call trace:") + 1:lines.index(f"names: {' '.join(names)}")]
    assert any(f.startswith("do_syscall_64+0x") for f in trace)  # getStacks: func+0xoff
    assert lines[-1] == "done"


def test_dynamic_var_main_thread_poll_and_ctrl_c(script):
    s = script("dynamic_var.py", os.getpid())
    s.ready()
    os.getppid()
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    s.expect(rf"^pid:{os.getpid()}, comm:{re.escape(comm)}, parent: {os.getppid()}$")
    lines = s.stop(waiting=False)  # Python's own SIGINT handler: KeyboardInterrupt
    assert lines[-1] == "key interrupt."


def test_two_event_maps_two_threads(script):
    s = script("two_events.py", os.getpid())
    s.ready()
    os.getppid()
    os.getpgid(0)
    got = {s.expect(rf"^(e\d): pid {os.getpid()} map (\d)$").groups() for _ in range(2)}
    assert got == {("e1", "1"), ("e2", "2")}
    s.stop(signal.SIGTERM)  # waitInterrupt ends on SIGTERM too


def test_perf_events_on_all_cpus(script):
    s = script("perf_all_cpus.py")
    ncpus = int(s.expect(r"^attached on (\d+) cpus$").group(1))
    with open("/sys/devices/system/cpu/online") as f:
        online = f.read().strip()
    assert ncpus == sum(int(hi or lo) - int(lo) + 1 for lo, _, hi in
                        (part.partition("-") for part in online.split(",")))
    s.ready()
    done = threading.Event()

    def spin() -> None:  # a busy CPU takes cpu-clock samples for sure
        while not done.is_set():
            sum(range(10000))

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        s.expect(r"^first sample on cpu \d+ \(pid \d+\)$")
    finally:
        done.set()
        spinner.join()
    lines = s.stop()
    counts = ast.literal_eval(lines[-1].removeprefix("samples: "))
    assert len(counts) == os.cpu_count() and sum(counts) > 0


def test_hardware_breakpoint(script):
    s = script("hw_breakpoint.py", 5)
    try:
        addr = s.expect(r"^ready, watching (0x[0-9a-f]+)$").group(1)
    except AssertionError:
        if "breakpoint" in s.stderr.lower() or "perf event 5:" in s.stderr:
            pytest.skip(f"this machine has no hardware breakpoints: {s.stderr.strip()}")
        raise
    for value in range(1, 6):
        s.expect(rf"^write at {addr} by pid {s.proc.pid}: {value}$")
    s.stop()


TARGET_C = r"""
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int lcc_target(int v)
{
    return v * 2;
}

__attribute__((noinline)) int lcc_outer(int v)
{
    return lcc_target(v) + 1;
}

int main(void)
{
    char c;

    if (read(0, &c, 1) != 1)     /* the test says go */
        return 1;
    printf("%d\n", lcc_outer(20));
    fflush(stdout);
    while (read(0, &c, 1) > 0)   /* alive until the test closes stdin */
        ;
    return 0;
}
"""


def test_uprobe_on_a_binary_built_here(script, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the uprobe target")
    (tmp_path / "target.c").write_text(TARGET_C)
    subprocess.run([cc, "-O1", "-g", "-fno-omit-frame-pointer", "-o", "lcc_target_bin",
                    "target.c"], cwd=tmp_path, check=True)
    # pyLCC's guide names the binary relative to the current directory: "./user:readline"
    s = script("uprobe.py", "./lcc_target_bin", "lcc_target", cwd=tmp_path)
    s.ready()
    target = subprocess.Popen([str(tmp_path / "lcc_target_bin")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        target.stdin.write("g")
        target.stdin.flush()
        assert target.stdout.readline().strip() == "41"
        stack = s.expect(rf"^hit in pid {target.pid}, stack: (.*)$").group(1).split(" | ")
        frames = s.expect(r"^frames: (.*)$").group(1).split(" | ")
    finally:
        target.stdin.close()
        target.wait(10)
    assert stack[0] == "lcc_target + 0x0"  # the probe sits on the function's first instruction
    # frame pointers lead on from the caller's frame: lcc_outer's return address is in main
    assert any(re.fullmatch(r"main \+ 0x[0-9a-f]+", f) for f in stack[1:]), stack
    assert frames[0] == "lcc_target+0x0 [lcc_target_bin]"  # lcc's spelling
    assert len(frames) == len(stack)
    s.stop()


def test_log2_and_log10_histograms(script):
    s = script("hist.py", os.getpid())
    s.ready()
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        for off in (1, 3, 5, 100, 1000, 1000, 70000):
            os.lseek(fd, off, os.SEEK_SET)
    finally:
        os.close(fd)
    lines = s.stop()  # the counts are in the maps once lseek() has returned
    h2 = lines.index("hist2:")
    h10 = lines.index("hist10:")
    rows2 = [re.match(r"^(\S+)\s+(\S+)\s+\|(@*) *\|$", line).groups()
             for line in lines[h2 + 1:h10]]
    assert [(r, n) for r, n, _ in rows2 if n != "0"] == [
        ("[0,2)", "1"), ("[2,4)", "1"), ("[4,8)", "1"), ("[64,128)", "1"),
        ("[512,1K)", "2"), ("[64K,128K)", "1")]
    assert len(rows2) == 17  # slots 0..16, the empty ones between included
    assert all(len(line) == 60 for line in lines[h2 + 1:h10])  # as wide as the terminal
    rows10 = [re.match(r"^(\S+)\s+(\S+)\s+\|", line).groups() for line in lines[h10 + 1:-1]]
    assert rows10 == [("[0,10)", "3"), ("[10,100)", "0"), ("[100,1K)", "1"),
                      ("[1K,10K)", "2"), ("[10K,100K)", "1")]
    counts = ast.literal_eval(lines[-1].removeprefix("hist2 counts: "))
    assert counts == [1, 1, 1, 0, 0, 0, 1, 0, 0, 2] + [0] * 6 + [1] + [0] * 3


def test_kprobe_script_fails_in_one_line(script):
    if features.has_kprobes():
        pytest.skip("this kernel has kprobes: the script attaches")
    s = script("kprobe_hello.py")
    rc = s.proc.wait(120)
    s.finish(rc, expected=1)
    err = s.stderr.strip()
    assert "\n" not in err, err
    assert err.startswith("kprobe_hello.py: cannot attach program 'j_wake_up_new_task'")
    assert "no kprobes" in err


def test_fentry_script_fails_in_one_line_where_refused(script):
    s = script("fentry_hello.py")
    try:
        s.ready()
    except AssertionError:
        err = s.stderr.strip()
        assert s.proc.returncode == 1
        assert "Traceback" not in err, err
        first, hint = err.splitlines()  # a load error: its message, then its hint
        assert first.startswith("fentry_hello.py: program 'j_nanosleep' could not be loaded")
        assert hint.startswith("  hint: ")
        assert "fentry" in err
    else:
        s.stop()  # this kernel runs fentry programs
