"""``lcc export`` scraped by a real Prometheus server.

``lcc export progs/export.bpf.c`` runs as a child process, filtering on this
test's pid; once it says it serves, the test calls getppid() a known number
of times.  A Prometheus server (Debian's ``prometheus``; ``scripts/setup.sh``
installs it) scrapes the exporter every second into a temporary store, and
the test asks its HTTP API until every expected series has the value the
calls gave.  Without the binary the test skips, unless ``LCC_REQUIRE_BPF=1``.
``lcc run --prometheus`` is checked on its own endpoint.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from kutil import trigger

pytestmark = pytest.mark.bpf

PROG = Path(__file__).resolve().parent.parent / "progs" / "export.bpf.c"
CALLS = 10  # call numbers 1..10: log2 slots 0:{1} 1:{2,3} 2:{4..7} 3:{8..10}

pytest.importorskip("prometheus_client", reason="prometheus-client (lcc[export]) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_line(p: subprocess.Popen, prefix: str, timeout: float = 120.0) -> str:
    """The first line of ``p``'s stderr starting with ``prefix`` (compiling may take a while)."""
    sel = selectors.DefaultSelector()
    sel.register(p.stderr, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(deadline - time.monotonic()):
            break
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line
    p.kill()
    raise AssertionError(f"no {prefix!r} line from {p.args[:4]}; it said: {''.join(seen)}")


def stop(p: subprocess.Popen) -> int:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        return p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        msg = "the prometheus binary is missing (scripts/setup.sh installs it)"
        if os.environ.get("LCC_REQUIRE_BPF") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def exporter(lcc_cache):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "lcc.cli", "export", str(PROG),
                          "--listen", f"127.0.0.1:{port}", "-s", f"target_pid={os.getpid()}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(p, "Serving")
        yield port
    finally:
        assert stop(p) == 0, p.stderr.read()


@pytest.fixture
def prometheus(prometheus_bin, exporter, tmp_path):
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: lcc
    static_configs:
      - targets: ["127.0.0.1:{exporter}"]
""")
    p = subprocess.Popen([prometheus_bin, f"--config.file={cfg}",
                          f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(p)


def query(base: str, promql: str) -> dict[tuple, float] | None:
    """{sorted labels (without __name__ and the target's): value} of an instant query,
    or None while Prometheus is not answering yet."""
    url = f"{base}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
    except OSError:
        return None
    out = {}
    for res in data["data"]["result"]:
        labels = {k: v for k, v in res["metric"].items()
                  if k not in ("__name__", "job", "instance")}
        out[tuple(sorted(labels.items()))] = float(res["value"][1])
    return out


def test_prometheus_scrapes_the_counts_the_program_made(prometheus):
    comm = Path("/proc/self/comm").read_text().strip()
    pid = str(os.getpid())
    for _ in range(CALLS):
        trigger()
    expected = {
        "lcc_export_calls_total": {(("comm", comm), ("pid", pid)): CALLS},
        "lcc_export_by_parity_total": {(("key", "0"),): CALLS // 2,
                                       (("key", "1"),): CALLS - CALLS // 2},
        "lcc_export_cpu_calls_total": {(("key", "0"),): CALLS},
        "lcc_export_n_hist_bucket": {(("le", "2"),): 1, (("le", "4"),): 3, (("le", "8"),): 7,
                                     (("le", "16"),): 10, (("le", "+Inf"),): 10},
        "lcc_export_n_hist_count": {(): CALLS},
        "lcc_export_events_events_total": {(): CALLS},
        "up": {(): 1},
    }
    got: dict[str, object] = {}
    deadline = time.monotonic() + 60  # bounds a failure only: Prometheus scrapes every 1 s
    while time.monotonic() < deadline:
        got = {name: query(prometheus, name) for name in expected}
        if got == expected:
            break
        time.sleep(0.5)
    assert got == expected
    # the histogram is usable as Prometheus histograms are: the median call number is 4..8
    median = query(prometheus, "histogram_quantile(0.5, lcc_export_n_hist_bucket)")
    assert median and 4 <= next(iter(median.values())) <= 8


def test_lcc_run_serves_metrics_while_it_runs(lcc_cache):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "lcc.cli", "run", str(PROG),
                          "--prometheus", f"127.0.0.1:{port}", "-s", f"target_pid={os.getpid()}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(p, "Attached")
        for _ in range(3):
            trigger()
        want = 'lcc_export_calls_total{comm="%s",pid="%d"} 3.0' % (
            Path("/proc/self/comm").read_text().strip(), os.getpid())
        deadline = time.monotonic() + 30
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            if want in text and "lcc_export_events_events_total 3.0" in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    finally:
        assert stop(p) == 0, p.stderr.read()
    assert "@calls:" in p.stdout.read()  # and at exit it printed the maps as before
