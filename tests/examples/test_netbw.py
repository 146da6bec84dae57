"""netbw end to end: UDP traffic across a veth pair between two namespaces the test creates.

The tool's counts are compared with the kernel's own device counters
(``ip -s link``: the same numbers as /sys/class/net/<dev>/statistics, read
inside the namespace) over the same stretch of time.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from toolproc import EXAMPLES, ToolProcess, load_example

pytestmark = pytest.mark.bpf

DATAGRAMS = 2000
PAYLOAD = 1200
FRAME = PAYLOAD + 8 + 20 + 14   # UDP, IPv4 and Ethernet headers
TOLERANCE = 0.02                # "within a few percent"; in practice the counts are equal
PORT = 9000

RECEIVER = textwrap.dedent("""
    import socket, sys
    n = int(sys.argv[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Room for every datagram at once (FORCE: past net.core.rmem_max; we are root),
    # so none is lost however late this process gets to read them.
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    s.bind(("198.18.10.2", %d))
    s.settimeout(20)
    print("ready", flush=True)
    got = 0
    try:
        while got < n:
            s.recv(65536)
            got += 1
    except socket.timeout:
        pass
    print(got, flush=True)
""" % PORT)

SENDER = textwrap.dedent("""
    import socket, sys
    n, size = int(sys.argv[1]), int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * size
    for i in range(n):
        s.sendto(payload, ("198.18.10.2", %d))
""" % PORT)


@dataclass
class VethPair:
    ns_a: str
    ns_b: str
    dev_a: str = "lcctva"
    dev_b: str = "lcctvb"

    def counters(self, ns: str, dev: str) -> dict[str, int]:
        """The device's own counters, read inside its namespace."""
        out = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev],
                             check=True, capture_output=True, text=True).stdout
        st = json.loads(out)[0]["stats64"]
        return {"rx_bytes": st["rx"]["bytes"], "rx_packets": st["rx"]["packets"],
                "tx_bytes": st["tx"]["bytes"], "tx_packets": st["tx"]["packets"]}

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"a": self.counters(self.ns_a, self.dev_a),
                "b": self.counters(self.ns_b, self.dev_b)}

    def netns_inode(self, ns: str) -> int:
        return os.stat(f"/run/netns/{ns}").st_ino

    def send(self, count: int = DATAGRAMS, size: int = PAYLOAD) -> int:
        """Send ``count`` datagrams from a to b; returns how many b received."""
        recv = subprocess.Popen(["ip", "netns", "exec", self.ns_b, sys.executable, "-c", RECEIVER,
                                 str(count)], stdout=subprocess.PIPE, text=True)
        try:
            assert recv.stdout.readline().strip() == "ready"
            subprocess.run(["ip", "netns", "exec", self.ns_a, sys.executable, "-c", SENDER,
                            str(count), str(size)], check=True, timeout=60)
            got = int(recv.stdout.readline())
        finally:
            recv.kill()
            recv.wait()
        return got


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def veth():
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    tag = f"lcct-bw-{secrets.token_hex(3)}"
    pair = VethPair(f"{tag}-a", f"{tag}-b")
    ends = ((pair.ns_a, pair.dev_a, "198.18.10.1/30"), (pair.ns_b, pair.dev_b, "198.18.10.2/30"))
    made = []
    try:
        for ns, _, _ in ends:
            _ip("netns", "add", ns)
            made.append(ns)
            # No IPv6 here: no router solicitations or DAD frames in the counts.
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            "net.ipv6.conf.all.disable_ipv6=1",
                            "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        _ip("link", "add", pair.dev_a, "netns", pair.ns_a, "type", "veth",
            "peer", "name", pair.dev_b, "netns", pair.ns_b)
        for ns, dev, addr in ends:
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _close(tool: int, kernel: int) -> bool:
    return abs(tool - kernel) <= TOLERANCE * max(kernel, 1)


@pytest.mark.parametrize("programs", ["TP_BTF", "TRACEPOINT"])
def test_counts_match_device_counters(veth, programs):
    mod = load_example("netbw")
    with mod.NetBw(prefer=[getattr(mod, programs)]) as tool:
        assert tool.chosen() == list(getattr(mod, programs))
        sampler = mod.Sampler(tool)
        before = veth.snapshot()
        got = veth.send()
        after = veth.snapshot()
        elapsed, deltas = sampler.sample()
    assert got == DATAGRAMS
    kernel = {side: {k: after[side][k] - before[side][k] for k in after[side]}
              for side in ("a", "b")}
    # The traffic the test made is what the kernel counted (ARP aside).
    assert kernel["a"]["tx_packets"] >= DATAGRAMS
    assert kernel["a"]["tx_bytes"] >= DATAGRAMS * FRAME

    ino_a, ino_b = veth.netns_inode(veth.ns_a), veth.netns_inode(veth.ns_b)
    devs = {(d.netns, d.name): (d, c) for d, c in deltas.items()}
    dev_a, a = devs[(ino_a, veth.dev_a)]
    dev_b, b = devs[(ino_b, veth.dev_b)]
    assert dev_a.label == f"{veth.dev_a}@{veth.ns_a}"
    for side, c in (("a", a), ("b", b)):
        for k in ("tx_bytes", "tx_packets", "rx_bytes", "rx_packets"):
            assert _close(getattr(c, k), kernel[side][k]), (side, k, getattr(c, k), kernel[side])
    # What a sent, b received.
    assert _close(b.rx_bytes, a.tx_bytes) and _close(b.rx_packets, a.tx_packets)
    assert elapsed > 0


def test_cli_json_intervals_and_summary(veth):
    before = veth.snapshot()
    devs = [f"{veth.dev_a}@{veth.ns_a}", f"{veth.dev_b}@{veth.ns_b}"]
    with ToolProcess("netbw", "--json", "-i", devs[0], "-i", devs[1], "0.5") as tool:
        assert veth.send() == DATAGRAMS
        after = veth.snapshot()
        # Wait for an interval that includes the end of the traffic, then stop.
        tool.wait_json(lambda o: o["type"] == "interval" and o["device"] == devs[0], 10,
                       what="an interval line for the sender")
        assert tool.stop(signal.SIGTERM) == 0
        out = tool.json()
    intervals = [o for o in out if o["type"] == "interval"]
    assert {o["device"] for o in intervals} <= set(devs)
    for o in intervals:
        assert o["tx_bytes_per_s"] == pytest.approx(o["tx_bytes"] / o["interval_s"],
                                                    rel=1e-4, abs=0.1)
    summary = out[-1]
    assert summary["type"] == "summary"
    totals = {d["device"]: d for d in summary["devices"]}
    kernel_a = {k: after["a"][k] - before["a"][k] for k in after["a"]}
    kernel_b = {k: after["b"][k] - before["b"][k] for k in after["b"]}
    assert _close(totals[devs[0]]["tx_bytes"], kernel_a["tx_bytes"])
    assert _close(totals[devs[0]]["tx_packets"], kernel_a["tx_packets"])
    assert _close(totals[devs[1]]["rx_bytes"], kernel_b["rx_bytes"])
    # The intervals add up to no more than the whole run.
    assert sum(o["tx_bytes"] for o in intervals if o["device"] == devs[0]) \
        <= totals[devs[0]]["tx_bytes"]


@pytest.mark.bpf
def test_cli_all_lists_idle_devices():
    """-a lists every device of the namespace, also those that had no traffic."""
    here = set(os.listdir("/sys/class/net"))
    with ToolProcess("netbw", "--json", "-a", "0.3", "1") as tool:
        assert tool.stop() == 0  # it ends by itself after one report
    recs = tool.json()
    intervals = {r["name"] for r in recs if r["type"] == "interval"}
    assert here <= intervals, (here, intervals)
    (summary,) = [r for r in recs if r["type"] == "summary"]
    assert here <= {d["name"] for d in summary["devices"]}


TOOL = EXAMPLES / "netbw" / "netbw.py"


def test_cli_unknown_interface_is_an_error():
    r = subprocess.run([sys.executable, str(TOOL), "-i", "nosuch0", "-d", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nosuch0" in r.stderr and "no network device" in r.stderr
    assert "(no traffic)" not in r.stdout
    r = subprocess.run([sys.executable, str(TOOL), "-i", "eth0@nosuchns", "-d", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nosuchns" in r.stderr
