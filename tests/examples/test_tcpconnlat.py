"""tcpconnlat end to end: the test's own connections to listeners on 127.0.0.1 and ::1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from toolproc import EXAMPLES, ToolProcess, load_example, wait_until

pytestmark = pytest.mark.bpf

HOSTS = ((socket.AF_INET, "127.0.0.1", 4), (socket.AF_INET6, "::1", 6))
# Loopback connects take microseconds; this bound only catches garbage (e.g. ns as us).
MAX_LAT_MS = 5000.0


@pytest.fixture(scope="module")
def mod():
    return load_example("tcpconnlat")


def _comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()[:15]


def connect_once(family: int, host: str) -> dict:
    """A full connect/accept/close to a fresh listener; returns the endpoints used."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection((host, port), timeout=5) as client:
            lport = client.getsockname()[1]
            conn, _ = listener.accept()
            conn.close()
    return {"host": host, "dport": port, "lport": lport}


def test_reports_own_connections(mod):
    me = os.getpid()
    seen, other, slow = [], [], []
    with mod.TcpConnLat(pid=me) as tool, mod.TcpConnLat(pid=1) as not_me, \
            mod.TcpConnLat(min_ms=60_000) as too_slow:
        assert set(tool.chosen()) <= set(mod.FENTRY + mod.KPROBE + mod.TRACEPOINT)
        tool.open_events(seen.append)
        not_me.open_events(other.append)
        too_slow.open_events(slow.append)

        made = [(ip, connect_once(fam, host)) for fam, host, ip in HOSTS]
        ports = {m["dport"] for _, m in made}

        def ours():
            return [c for c in seen if c.dport in ports]

        wait_until(lambda: len(ours()) == len(made), 10, step=lambda: tool.poll(100),
                   what="both connections")
        not_me.ring_buffer_consume()
        too_slow.ring_buffer_consume()

    by_port = {c.dport: c for c in ours()}
    for ip, m in made:
        c = by_port[m["dport"]]
        assert c.pid == me
        assert c.comm == _comm()
        assert c.ip == ip
        assert c.saddr == m["host"] and c.daddr == m["host"]
        assert c.lport == m["lport"]
        assert 0 <= c.lat_ms < MAX_LAT_MS
        assert c.to_dict()["type"] == "connect"
    # The kernel-side filters: another pid, and a minimum latency no loopback connect reaches.
    assert not [c for c in other if c.dport in ports]
    assert not [c for c in slow if c.dport in ports]


def test_cli_json_and_summary(mod):
    me = os.getpid()
    with ToolProcess("tcpconnlat", "--json", "-v", "-L", "-p", str(me)) as tool:
        wall0, mono0 = time.time(), time.monotonic()
        made = [(ip, connect_once(fam, host)) for fam, host, ip in HOSTS]
        wall1, mono1 = time.time(), time.monotonic()
        ports = {m["dport"] for _, m in made}
        events = tool.wait_json(lambda o: o.get("dport") in ports, 10,
                                what="both connections")
        tool.wait_for(lambda: len({o["dport"] for o in tool.json()
                                   if o.get("dport") in ports}) == 2, 10)
        assert tool.stop(signal.SIGTERM) == 0
        out = tool.json()
    events = [o for o in out if o.get("dport") in ports]
    for ip, m in made:
        (e,) = [o for o in events if o["dport"] == m["dport"]]
        assert e["type"] == "connect" and e["pid"] == me and e["ip"] == ip
        assert e["saddr"] == e["daddr"] == m["host"] and e["lport"] == m["lport"]
        assert 0 <= e["lat_ms"] < MAX_LAT_MS
        # ts is wall-clock epoch seconds, ts_mono the kernel's monotonic clock: both
        # fall within the clock readings taken around the connects (1 ms of rounding).
        assert wall0 - 0.001 <= e["ts"] <= wall1 + 0.001, (wall0, e["ts"], wall1)
        assert mono0 - 0.001 <= e["ts_mono"] <= mono1 + 0.001, (mono0, e["ts_mono"], mono1)
    summary = out[-1]
    assert summary["type"] == "summary" and summary["connections"] >= 2
    assert summary["lat_ms_max"] >= max(e["lat_ms"] for e in events)
    # -v names the alternative in use and why each better one was passed over.
    alternatives = [" + ".join(alt) for alt in (mod.FENTRY, mod.KPROBE, mod.TRACEPOINT)]
    (using,) = [ln for ln in tool.stderr if ln.startswith("using ")]
    chosen = alternatives.index(using.removeprefix("using "))
    for better in alternatives[:chosen]:
        assert any(ln.startswith(f"skipped {better}: ") for ln in tool.stderr), tool.stderr


def test_cli_table_columns():
    with ToolProcess("tcpconnlat", "-t", "-L", "-p", str(os.getpid())) as tool:
        m = connect_once(socket.AF_INET, "127.0.0.1")
        tool.wait_for(lambda: [ln for ln in tool.stdout if f" {m['dport']} " in ln], 10,
                      what="the connection's line")
        assert tool.stop(signal.SIGINT) == 0
    assert tool.stdout[0].split() == ["TIME(s)", "PID", "COMM", "IP", "SADDR", "LPORT", "DADDR",
                                      "DPORT", "LAT(ms)"]
    (row,) = [ln.split() for ln in tool.stdout[1:] if f" {m['dport']} " in ln]
    assert row[1] == str(os.getpid()) and row[3] == "4"
    assert row[4] == row[6] == "127.0.0.1"
    assert row[5] == str(m["lport"]) and row[7] == str(m["dport"])
    assert 0 <= float(row[8]) < MAX_LAT_MS
    assert any(ln.startswith("1 connection") for ln in tool.stdout)


@pytest.mark.bpf
def test_example_script_shows_connections():
    """scripts/example.sh runs tcpconnlat with loopback connections beside it."""
    script = EXAMPLES.parent / "scripts" / "example.sh"
    env = {**os.environ, "LCC_SKIP_SETUP": "1", "LCC_PYTHON": sys.executable}
    r = subprocess.run([str(script), "tcpconnlat", "-d", "3", "--json"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    conns = [json.loads(ln) for ln in r.stdout.splitlines()
             if ln.startswith('{"type":"connect"')]
    assert [c for c in conns if c["daddr"] == "127.0.0.1"], r.stdout
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and summary["connections"] >= 1
