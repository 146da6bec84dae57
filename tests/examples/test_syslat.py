"""syslat end to end: a child makes a known number of syscalls, syslat counts exactly those.

The child blocks SIGUSR1, says "ready", waits in sigwait (so its startup
syscalls happen before syslat attaches), then makes N getppid() and M
read() calls and leaves with _exit (exit_group never returns, so it is
never counted).  Filtering by the child's pid leaves nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from gatedchild import GatedChild
from toolproc import EXAMPLES, load_example

pytestmark = pytest.mark.bpf

TOOL = EXAMPLES / "syslat" / "syslat.py"

# The child (tests/gatedchild.py) names itself, then makes the calls once released.
SETUP = """
with open("/proc/self/comm", "w") as f:
    f.write(sys.argv[3])
fd = os.open("/dev/zero", os.O_RDONLY)
"""
BODY = """
for _ in range(int(sys.argv[1])):
    os.getppid()
for _ in range(int(sys.argv[2])):
    os.read(fd, 1)
"""

N_GETPPID, M_READ = 37, 23


@pytest.fixture(scope="module")
def syslat():
    return load_example("syslat")


@pytest.fixture
def child():
    with GatedChild(BODY, N_GETPPID, M_READ, f"sylt{os.getpid() % 100000}", setup=SETUP) as c:
        yield c


def _by_name(results):
    return {r.name: r for r in results}


def test_counts_match_the_calls_made(syslat, child):
    with syslat.SysLat(pid=child.pid) as tool:
        child.go()
        got = _by_name(tool.results())
    assert got["getppid"].count == N_GETPPID
    assert got["read"].count == M_READ
    for name in ("getppid", "read"):
        r = got[name]
        assert r.hist.total == r.count          # every call is in the histogram
        assert r.nr == tool.table.number(name)
        assert 0 < r.max_ns <= r.total_ns
    # Syscalls entered before attach (the sigwait) or never returning (exit_group) are absent.
    assert "rt_sigtimedwait" not in got and "exit_group" not in got


def test_named_syscalls_only(syslat, child):
    with syslat.SysLat(pid=child.pid, syscalls=["getppid"], unit="ns") as tool:
        child.go()
        got = _by_name(tool.results())
    assert list(got) == ["getppid"]
    r = got["getppid"]
    assert r.count == N_GETPPID and r.hist.total == N_GETPPID
    text = r.render()
    assert text.startswith(f"getppid ({r.nr}): {N_GETPPID} calls")
    assert "MIN -> MAX" in text and "PCT% TOTAL" in text and "average:" in text
    # The percentages of the summary rows add up to 100.
    pcts = [float(line.split(":")[1].split("%")[0]) for line in text.splitlines()
            if "->" in line and "MIN" not in line]
    assert abs(sum(pcts) - 100.0) < 0.1


def test_comm_filter(syslat, child):
    with syslat.SysLat(comm=child.comm, syscalls=["getppid", "read"]) as tool:
        child.go()
        got = _by_name(tool.results())
    assert got["getppid"].count == N_GETPPID
    assert got["read"].count == M_READ


def test_unknown_syscall_is_a_clear_error(syslat):
    from lcc.syscalls import UnknownSyscall
    with pytest.raises(UnknownSyscall, match="did you mean"):
        syslat.SysLat(pid=1, syscalls=["getppidd"])


def _start_cli(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(TOOL), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert line.startswith("Tracing"), line + p.stderr.read()
    return p


def test_cli_json_stops_when_the_process_exits(child):
    p = _start_cli("-p", str(child.pid), "--json", "getppid", "read")
    child.go()
    out, err = p.communicate(timeout=30)  # exits by itself: the traced process is gone
    assert p.returncode == 0, err
    recs = {r["syscall"]: r for r in map(json.loads, out.splitlines())}
    assert set(recs) == {"getppid", "read"}
    assert recs["getppid"]["count"] == N_GETPPID
    assert recs["read"]["count"] == M_READ
    assert sum(b["count"] for b in recs["read"]["hist"]["buckets"]) == M_READ
    assert recs["read"]["unit"] == "us"


def test_cli_sigterm_prints_the_summary(child):
    p = _start_cli("-c", child.comm, "--hist", "getppid")
    child.go()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out.startswith("getppid (")
    assert f": {N_GETPPID} calls" in out.splitlines()[0]
    assert "usecs" in out and "distribution" in out
    counts = [int(line.split(":")[1].split("|")[0]) for line in out.splitlines()
              if "->" in line]
    assert sum(counts) == N_GETPPID


def test_cli_help():
    r = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--duration" in r.stdout and "SYSCALL" in r.stdout


# A second child: N getppid() that succeed and K close() of a bad fd that fail (EBADF).
K_CLOSE = 11
FAILING = """
for _ in range(int(sys.argv[1])):
    os.getppid()
for _ in range(int(sys.argv[2])):
    try:
        os.close(987654)
    except OSError:
        pass
"""


@pytest.fixture
def failing_child():
    with GatedChild(FAILING, N_GETPPID, K_CLOSE) as c:
        yield c


def test_errno_counts(syslat, failing_child):
    with syslat.SysLat(pid=failing_child.pid) as tool:
        failing_child.go()
        got = _by_name(tool.results())
    assert got["getppid"].count == N_GETPPID and got["getppid"].errors == 0
    close = got["close"]
    assert close.count == K_CLOSE and close.errors == K_CLOSE
    assert close.errnos == {"EBADF": K_CLOSE}
    assert close.to_dict()["errnos"] == {"EBADF": K_CLOSE}
    assert f"failed: {K_CLOSE} errors (EBADF {K_CLOSE})" in close.render()


def test_cli_failures_only_top_table(failing_child):
    p = _start_cli("-p", str(failing_child.pid), "-x", "-T", "5")
    failing_child.go()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SYSCALL", "COUNT", "ERRORS", "TOTAL(us)"]
    rows = [ln.split() for ln in lines[1:] if ln and not ln.startswith("(")]
    # -x: the getppid calls all succeeded, so only close is left.
    assert [r[0] for r in rows] == ["close"], out
    assert rows[0][1] == rows[0][2] == str(K_CLOSE) and rows[0][-1] == f"EBADF:{K_CLOSE}"
    assert "estimated from the log2 histogram" in out


def test_cli_json_has_percentiles(child):
    p = _start_cli("-p", str(child.pid), "--json", "-T", "1")
    child.go()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    (rec,) = [json.loads(x) for x in out.splitlines()]
    assert rec["syscall"] == "getppid" and rec["count"] == N_GETPPID  # the most called
    pct = rec["percentiles"]
    assert pct["p50"] <= pct["p90"] <= pct["p99"] <= rec["max_ns"] / 1000
    assert rec["percentiles_estimated"] is True and rec["errors"] == 0


def test_percentile_estimate_from_log2_buckets(syslat):
    from lcc.hist import Log2Hist
    # 50 values in [4, 7], 40 in [8, 15], 10 in [64, 127].
    h = Log2Hist.from_slots({2: 50, 3: 40, 6: 10})
    est = syslat.estimate_percentile
    assert est(h, 50) == pytest.approx(8.0)              # the top of the first bucket
    assert est(h, 90) == pytest.approx(16.0)             # the top of the second
    assert est(h, 99) == pytest.approx(64 + 0.9 * 64)    # 9 of 10 into [64, 128)
    assert est(h, 99, max_value=100) == 100              # capped at the measured max
    assert 4 <= est(h, 10) <= 7                          # inside the true bucket
    assert est(Log2Hist(), 50) is None
