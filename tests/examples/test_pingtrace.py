"""pingtrace end to end: probes across a veth pair between two test namespaces.

Topology (made and removed by the ``hosts`` fixture)::

    lcct-pa-<pid>  lcct-a0 198.18.0.1/30  <--veth-->  198.18.0.2/30 lcct-b0  lcct-pb-<pid>
    (prober: pingtrace TARGET)                         (pingtrace --server)

Every tool runs inside its namespace through ``ip netns exec`` and follows
that namespace only, as it would on two machines.  The stage arithmetic is
also tested without a kernel, on made-up timestamps.
"""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys

import pytest
from netns import leftovers, namespaces, veth_pair
from toolproc import EXAMPLES, ToolProcess, load_example, wait_until

A_ADDR, B_ADDR = "198.18.0.1", "198.18.0.2"
PEER_PORT = 17656

# Stages every probe across the veth pair must have, in this order (wakeup may be
# absent: the prober is often still running when its reply is queued).
LOCAL_TX = ["send", "qdisc"]
PEER = ["devrx", "iprx", "icmp", "iptx", "qdisc"]
LOCAL_RX = ["devrx", "iprx", "deliver", "wakeup", "sched", "recv"]
OPTIONAL = {("local", "wakeup")}

# JSON stage times are rounded to 1 ns (0.001 us); a sum of n of them can be off by n ns.
ROUNDING_US = 0.001
# The prober reads CLOCK_MONOTONIC just before sendto() and just after recvfrom()
# returns; the kernel stamps the same clock at the syscall entry and exit.  What lies
# between is a few interpreter steps (about 25 us on the development machine); the
# bound leaves room for the prober to be preempted there once or twice on a busy
# 2-CPU machine (the scheduler's base slice is a few ms).
APP_MAX_US = 20_000.0
# The burst that makes the spike: 40 datagrams of 1428 bytes on the wire through a
# 1 Mbit/s token bucket hold the device queue for about 450 ms; the probe sent after
# them waits behind whatever is left.  10 ms is far below that and far above a
# queue-free pass through the qdisc (a few us).
BURST_COUNT, BURST_BYTES = 40, 1400
MIN_SPIKE_QDISC_US = 10_000.0


class NsTool(ToolProcess):
    """A tool's command line run inside a namespace (``ip netns exec``)."""

    def __init__(self, ns, tool: str, *args: str, ready_timeout: float = 120.0) -> None:
        super().__init__(tool, *args, prefix=ns.command(), ready_timeout=ready_timeout)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the tool to end by itself (e.g. after -c COUNT probes)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.argv} did not finish within {timeout}s; stderr:\n"
                                 + "\n".join(self.stderr))
        for t in self._threads:
            t.join(timeout)
        return rc


@pytest.fixture
def hosts():
    with namespaces("pa", "pb") as (a, b):
        veth_pair(a, b, f"{A_ADDR}/30", f"{B_ADDR}/30")
        yield a, b
    assert not leftovers()


def _probes(out: list[dict]) -> dict[int, dict]:
    return {o["seq"]: o for o in out if o["type"] == "probe"}


def _check_adds_up(p: dict) -> None:
    """A probe's stages are non-negative and add up to its round trip."""
    assert not p["lost"], p
    kernel = [s for s in p["stages"] if s["name"] != "app" and s["us"] is not None]
    assert all(s["us"] >= 0 for s in kernel), p["stages"]
    total = sum(s["us"] for s in kernel)
    assert math.isclose(total, p["kernel_rtt_us"], abs_tol=ROUNDING_US * len(kernel)), p
    # The syscalls the kernel stamped lie inside the prober's own clock readings...
    (app,) = [s for s in p["stages"] if s["name"] == "app"]
    assert app["us"] is not None and -ROUNDING_US <= app["us"] <= APP_MAX_US, p
    # ...and with the prober's time the stages make the round trip it measured.
    assert math.isclose(total + app["us"], p["rtt_us"], abs_tol=ROUNDING_US * (len(kernel) + 2))


@pytest.mark.bpf
def test_both_hosts_stages_in_one_table(hosts):
    a, b = hosts
    count = 8
    with NsTool(b, "pingtrace", "--server", "--json", "--port", str(PEER_PORT)) as server:
        # --peer-timeout: how long a row may wait for its report on a busy machine.
        with NsTool(a, "pingtrace", B_ADDR, "-c", str(count), "-i", "0.05", "--peer",
                    "--port", str(PEER_PORT), "--peer-timeout", "5", "--json") as prober:
            assert prober.wait_exit(60) == 0
            out = prober.json()
        server.wait_json(lambda o: o.get("type") == "echo" and o["seq"] == count, 10,
                         what="the server's line for the last probe")
        assert server.stop(signal.SIGTERM) == 0
        served = server.json()

    probes = _probes(out)
    assert sorted(probes) == list(range(1, count + 1))
    ident = probes[1]["id"]
    echoes = {o["seq"]: o for o in served if o["type"] == "echo" and o["id"] == ident}
    assert sorted(echoes) == list(range(1, count + 1))
    expected = ([("local", n) for n in LOCAL_TX] + [("local", "wire")]
                + [("peer", n) for n in PEER] + [("local", n) for n in LOCAL_RX]
                + [("local", "app")])
    for seq, p in probes.items():
        assert p["target"] == B_ADDR and p["peer"] is True
        assert [(s["host"], s["name"]) for s in p["stages"]] == expected
        missing = [(s["host"], s["name"]) for s in p["stages"] if s["us"] is None]
        assert set(missing) <= OPTIONAL, (seq, missing)
        _check_adds_up(p)
        # The peer's stages are the ones the server printed for this very probe.
        e = echoes[seq]
        assert e["peer"] == A_ADDR and e["reported"] is True
        assert [(s["name"], s["us"]) for s in e["stages"]] == \
            [(s["name"], s["us"]) for s in p["stages"] if s["host"] == "peer"]
        # The request left before the reply came back, in the prober's own points.
        pts = p["points"]
        assert pts["request.send"] <= pts["request.dev_queue"] <= pts["request.dev_start_xmit"] \
            < pts["reply.netif_receive_skb"] <= pts["reply.sock_queued"] <= pts["reply.copy"] \
            <= pts["reply.recv_return"]
    summary = out[-1]
    assert summary["type"] == "summary" and summary["sent"] == summary["received"] == count
    # Every probe was shown with the peer's stages, and no report was left over.
    assert summary["peer_reports"] == count and summary["peer_reports_unmatched"] == 0
    server_summary = served[-1]
    assert server_summary["type"] == "summary" and server_summary["reports_sent"] >= count


@pytest.mark.bpf
def test_total_loss_exits_non_zero(hosts):
    """A peer that ignores echo requests: every probe is lost, and the exit status says so."""
    a, b = hosts
    b.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    with NsTool(a, "pingtrace", B_ADDR, "-c", "2", "-i", "0.05", "-W", "0.3",
                "--json") as prober:
        assert prober.wait_exit(60) == 1
        out = prober.json()
    summary = out[-1]
    assert summary["type"] == "summary" and summary["sent"] == 2 and summary["received"] == 0
    assert summary["loss_pct"] == 100.0 and summary["peer_reports"] is None
    assert all(p["lost"] for p in _probes(out).values())
    assert any("100% loss" in ln for ln in prober.stderr), prober.stderr


@pytest.mark.bpf
def test_spike_from_a_queue_the_test_fills(hosts):
    a, _b = hosts
    a.run("tc", "qdisc", "add", "dev", "lcct-a0", "root", "tbf", "rate", "1mbit",
          "burst", "1600", "latency", "1s")
    burst = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    count, burst_after = 14, 4
    with burst, NsTool(a, "pingtrace", B_ADDR, "-c", str(count), "-i", "0.1", "--json") as tool:
        tool.wait_json(lambda o: o.get("type") == "probe" and o["seq"] == burst_after, 30,
                       what=f"probe {burst_after}")
        for _ in range(BURST_COUNT):
            burst.sendto(b"x" * BURST_BYTES, (B_ADDR, 9))
        assert tool.wait_exit(60) == 0
        out = tool.json()

    probes = _probes(out)
    assert sorted(probes) == list(range(1, count + 1))
    for p in probes.values():
        _check_adds_up(p)
    summary = out[-1]
    assert summary["type"] == "summary" and summary["received"] == count
    assert summary["spikes"], summary
    worst = max(summary["spikes"], key=lambda s: s["rtt_us"])
    assert worst["seq"] > burst_after
    assert worst["stage"] == "qdisc"
    assert worst["stage_us"] >= MIN_SPIKE_QDISC_US
    # The flagged probe's own row agrees: its time went to the device queue.
    (qdisc,) = [s["us"] for s in probes[worst["seq"]]["stages"] if s["name"] == "qdisc"]
    assert qdisc == worst["stage_us"]
    assert summary["rtt_us"]["median"] * summary["spike_rule"]["factor"] <= worst["rtt_us"]


@pytest.mark.bpf
def test_passive_follows_pings_on_both_hosts(hosts):
    a, b = hosts
    with NsTool(a, "pingtrace", "-a", B_ADDR, "--json") as watch_a, \
            NsTool(b, "pingtrace", "-a", A_ADDR, "--json") as watch_b:
        with NsTool(a, "pingtrace", B_ADDR, "-c", "3", "-i", "0.05", "--json") as prober:
            assert prober.wait_exit(60) == 0
            ident = _probes(prober.json())[1]["id"]

        def mine(kind):
            return lambda o: o.get("type") == kind and o["id"] == ident

        watch_a.wait_for(lambda: len([o for o in watch_a.json() if mine("recv")(o)]) == 3, 10,
                         what="three receive lines")
        watch_b.wait_for(lambda: len([o for o in watch_b.json() if mine("echo")(o)]) == 3, 10,
                         what="three echo lines")
        assert watch_a.stop(signal.SIGTERM) == 0
        assert watch_b.stop(signal.SIGINT) == 0
        seen_a, seen_b = watch_a.json(), watch_b.json()

    sends = {o["seq"]: o for o in seen_a if mine("send")(o)}
    recvs = {o["seq"]: o for o in seen_a if mine("recv")(o)}
    echoes = {o["seq"]: o for o in seen_b if mine("echo")(o)}
    assert sorted(sends) == sorted(recvs) == sorted(echoes) == [1, 2, 3]
    for seq in (1, 2, 3):
        assert sends[seq]["peer"] == recvs[seq]["peer"] == B_ADDR
        assert [s["name"] for s in sends[seq]["stages"]] == ["send", "qdisc"]
        assert recvs[seq]["stages"][0]["name"] == "remote"
        assert recvs[seq]["rtt_us"] > 0
        assert echoes[seq]["peer"] == A_ADDR
        assert [s["name"] for s in echoes[seq]["stages"]] == PEER
        assert all(s["us"] is not None and s["us"] >= 0 for s in echoes[seq]["stages"])
        # The peer answered inside the time the request and reply were away.
        (remote,) = [s["us"] for s in recvs[seq]["stages"] if s["name"] == "remote"]
        assert echoes[seq]["rtt_us"] <= remote
    for seen in (seen_a, seen_b):
        assert seen[-1]["type"] == "summary"
    assert seen_a[-1]["recv"] >= 3 and seen_b[-1]["echo"] >= 3


@pytest.mark.bpf
@pytest.mark.parametrize("kinds", [("raw",), ("tp", "raw")], ids=["raw_tp", "tracepoint"])
def test_other_program_kinds_see_the_same_points(hosts, kinds):
    """The raw_tp and classic tracepoint alternatives, in process, on the test's own echo."""
    pt = load_example("pingtrace")
    import prober
    import timeline as tl
    a, _b = hosts
    ident = 0x4C43
    asm = tl.Assembler()
    with pt.PingTrace(netns=a.inode, address=B_ADDR, icmp_id=ident, kinds=kinds) as tool:
        assert all(n.split("_", 1)[0] in kinds for n in tool.chosen()), tool.chosen()
        tool.open_events(asm.add)
        with a.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            sock.settimeout(5)
            sock.sendto(prober.echo_request(ident, 1, 56), (B_ADDR, 0))
            while not prober.is_our_reply(sock.recvfrom(2048)[0], ident, 1):
                pass

        def record():
            rec = asm.get(tl.CLIENT, B_ADDR, ident, 1)
            return rec if rec is not None and rec.has(tl.ECHO_REPLY, tl.RECV) else None

        rec = wait_until(record, 10, step=lambda: tool.ring_buffer_poll(50),
                         what="the echo's points")
    Q, R = tl.ECHO_REQUEST, tl.ECHO_REPLY
    for point in [(Q, tl.SEND), (Q, tl.DEV_QUEUE), (Q, tl.DEV_START), (R, tl.NETIF_RX),
                  (R, tl.RECEIVE_SKB), (R, tl.ROUTE_IN), (R, tl.SOCK), (R, tl.COPY),
                  (R, tl.RECV)]:
        assert rec.has(*point), (point, rec.points)
    st = tl.stages(rec)
    assert all(s.ns is not None and s.ns >= 0 for s in st if s.name != "wakeup"), st
    # Only this namespace's view: the peer's side of the echo is not in it.
    assert asm.get(tl.SERVER, A_ADDR, ident, 1) is None


def test_help():
    r = subprocess.run([sys.executable, str(EXAMPLES / "pingtrace" / "pingtrace.py"), "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0
    assert "--server" in r.stdout and "--peer" in r.stdout and "-a ADDR" in r.stdout


# -- the stage arithmetic, on made-up timestamps (no kernel needed) --------------------

@pytest.fixture(scope="module")
def tl():
    load_example("pingtrace")      # puts examples/pingtrace on sys.path
    import timeline
    return timeline


def _record(tl, role, points):
    rec = tl.Record(role, B_ADDR, 7, 1)
    for t, p, ts in points:
        rec.add(t, p, ts)
    return rec


def test_stages_cover_the_round_trip_and_skip_missing_points(tl):
    Q, R = tl.ECHO_REQUEST, tl.ECHO_REPLY
    client = _record(tl, tl.CLIENT, [
        (Q, tl.SEND, 1000), (Q, tl.DEV_QUEUE, 1100), (Q, tl.DEV_START, 1150),
        (R, tl.NETIF_RX, 1500), (R, tl.RECEIVE_SKB, 1520),        # no route_in point
        (R, tl.SOCK, 1600), (R, tl.WAKE, 900),                    # a stale wake-up...
        (R, tl.WAKE, 1610), (R, tl.COPY, 1700), (R, tl.RECV, 1750)])  # ...and the real one
    st = {s.name: s.ns for s in tl.stages(client)}
    assert st == {"send": 100, "qdisc": 50, "remote": 350, "devrx": 20, "iprx": None,
                  "deliver": 80, "wakeup": 10, "sched": 90, "recv": 50}
    assert tl.span_ns(client) == 750 == sum(v for v in st.values() if v)

    server = _record(tl, tl.SERVER, [
        (Q, tl.NETIF_RX, 50_000), (Q, tl.RECEIVE_SKB, 50_010), (Q, tl.ROUTE_IN, 50_020),
        (R, tl.ROUTE_OUT, 50_050), (R, tl.DEV_QUEUE, 50_080), (R, tl.DEV_START, 50_090)])
    combined = tl.combine(client, server)
    names = [(s.host, s.name) for s in combined]
    assert names[:4] == [("local", "send"), ("local", "qdisc"), ("local", "wire"),
                         ("peer", "devrx")]
    assert {s.name: s.ns for s in combined if s.host == "peer"} == \
        {"devrx": 10, "iprx": 10, "icmp": 30, "iptx": 30, "qdisc": 10}
    assert [s.ns for s in combined if s.name == "wire"] == [350 - 90]
    assert sum(s.ns for s in combined if s.ns) == 750
    # A peer that claims more time than the packet was away is not believed.
    slow = _record(tl, tl.SERVER, [(Q, tl.NETIF_RX, 0), (R, tl.DEV_START, 10_000)])
    assert [s.name for s in tl.combine(client, slow)] == [s.name for s in tl.stages(client)]


def test_roles_spikes_and_blame(tl):
    Q, R = tl.ECHO_REQUEST, tl.ECHO_REPLY
    assert tl.role_of(Q, tl.DEV_QUEUE) == tl.role_of(R, tl.RECEIVE_SKB) == tl.CLIENT
    assert tl.role_of(Q, tl.RECEIVE_SKB) == tl.role_of(R, tl.ROUTE_OUT) == tl.SERVER
    assert tl.is_spike(1000.0, 100.0, 5, 200)
    assert not tl.is_spike(400.0, 100.0, 5, 200)      # under 5x the median
    assert not tl.is_spike(50.0, 10.0, 5, 200)        # 5x, but only 40 us more
    rows = [[tl.Stage("local", "qdisc", 5_000), tl.Stage("local", "send", 40_000)]] * 4
    spike = [tl.Stage("local", "qdisc", 900_000), tl.Stage("local", "send", 45_000)]
    culprit = tl.blame(spike, tl.stage_medians(rows + [spike]))
    assert (culprit.host, culprit.name) == ("local", "qdisc")


def test_echo_packets(tl):
    import prober
    pkt = prober.echo_request(0x1234, 9, 56)
    assert len(pkt) == 64 and pkt[0] == 8 and prober.checksum(pkt) == 0
    reply = bytes([0x45]) + bytes(19) + bytes([0, 0, 0, 0, 0x12, 0x34, 0, 9])
    assert prober.is_our_reply(reply, 0x1234, 9) and not prober.is_our_reply(reply, 0x1234, 8)
