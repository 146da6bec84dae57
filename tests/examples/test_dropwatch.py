"""dropwatch end to end: drops the test causes, on 127.0.0.1/::1 and in a test namespace.

- a TCP SYN to a closed port on 127.0.0.1 and ::1: the kernel answers with a
  RST and drops the SYN with reason NO_SOCKET;
- a UDP datagram to a port an nftables rule drops, inside a test namespace:
  reason NETFILTER_DROP;
- UDP datagrams to a closed port, summed by kernel stack with -s.

Each test uses a port nothing listens on and filters on it, so other drops on
the machine do not get in the way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from netns import available as netns_unavailable
from netns import leftovers, namespaces
from toolproc import EXAMPLES, ToolProcess, load_example, wait_until

LOCATION = re.compile(r"^[A-Za-z_][\w.]*\+0x[0-9a-f]+( \[\w+\])?$")


def free_port(family: int, kind: int) -> int:
    """A port nothing is bound to now (bound, read, released)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def syn_to_closed(family: int, port: int) -> None:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            s.connect((host, port))


def reason_names() -> dict[int, str]:
    from lcc.btf import enum_names
    return {v: n.removeprefix("SKB_DROP_REASON_") for v, n in
            enum_names("skb_drop_reason").items()}


@pytest.mark.bpf
@pytest.mark.parametrize("family,host,ip", [(socket.AF_INET, "127.0.0.1", 4),
                                            (socket.AF_INET6, "::1", 6)])
def test_syn_to_closed_port(family, host, ip):
    port = free_port(family, socket.SOCK_STREAM)
    with ToolProcess("dropwatch", "--json", "-v", "-P", "tcp", "-p", str(port)) as tool:
        syn_to_closed(family, port)
        (drop,) = tool.wait_json(lambda o: o["type"] == "drop", 10, what="the SYN's drop")
        assert tool.stop(signal.SIGTERM) == 0
        out = tool.json()
    assert drop["reason"] == "NO_SOCKET"
    assert reason_names()[drop["reason_code"]] == "NO_SOCKET"   # the kernel's own name
    assert drop["proto"] == "TCP" and drop["family"] == ip and drop["tcp_flags"] == "S"
    assert drop["saddr"] == drop["daddr"] == host
    assert drop["dport"] == port and drop["sport"] > 0
    assert LOCATION.match(drop["location"]), drop["location"]
    assert drop["location"].startswith(f"tcp_v{ip}_rcv")
    summary = out[-1]
    assert summary["type"] == "summary" and summary["by_reason"] == {"NO_SOCKET": 1}
    assert any(ln.startswith("using ") for ln in tool.stderr)


@pytest.mark.bpf
def test_nftables_drop_in_a_namespace():
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    if shutil.which("nft") is None:
        pytest.skip("nftables (nft) is not installed")
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    with namespaces("dw") as (ns,):
        ns.run("nft", "-f", "-", input=(
            "table inet lcct {\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    udp dport {port} drop\n"
            "  }\n"
            "}\n"))
        sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock, ToolProcess("dropwatch", "--json", "-P", "udp", "-p", str(port)) as tool:
            sock.sendto(b"dropped by the rule", ("127.0.0.1", port))
            (drop,) = tool.wait_json(lambda o: o["type"] == "drop", 10,
                                     what="the datagram's drop")
            assert tool.stop(signal.SIGINT) == 0
        inode = ns.inode
    assert not leftovers()
    assert drop["reason"] == "NETFILTER_DROP"
    assert reason_names()[drop["reason_code"]] == "NETFILTER_DROP"
    assert drop["proto"] == "UDP" and drop["family"] == 4 and drop["tcp_flags"] is None
    assert drop["daddr"] == "127.0.0.1" and drop["dport"] == port
    assert drop["netns"] == inode
    assert LOCATION.match(drop["location"]), drop["location"]


@pytest.mark.bpf
def test_stacks_and_filters():
    dw = load_example("dropwatch")
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    other = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    n = 3
    seen = []
    with dw.DropWatch(proto="udp", port=port, stacks=True) as tool, \
            dw.DropWatch(proto="tcp", port=port) as wrong_proto, \
            dw.DropWatch(address="::1", port=port) as wrong_addr:
        tool.open_events(seen.append)
        wrong = []
        wrong_proto.open_events(wrong.append)
        wrong_addr.open_events(wrong.append)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                s.sendto(b"nobody listens", ("127.0.0.1", port))
            s.sendto(b"another port", ("127.0.0.1", other))
        wait_until(lambda: len(seen) >= n, 10, step=lambda: tool.poll(100), what=f"{n} drops")
        sums = tool.stack_sums()
        wrong_proto.ring_buffer_consume()
        wrong_addr.ring_buffer_consume()
    assert len(seen) == n and not wrong
    assert {(d.reason, d.proto, d.dport) for d in seen} == {("NO_SOCKET", "UDP", port)}
    assert all(d.stack_id >= 0 for d in seen)
    mine = [s for s in sums if s.stack_id in {d.stack_id for d in seen}]
    assert sum(s.count for s in mine) == n and {s.reason for s in mine} == {"NO_SOCKET"}
    # Stacks start at the function that dropped the packet, the event's location.
    for s in mine:
        assert s.frames and s.frames[0].split("+")[0] == seen[0].location.split("+")[0]
        assert not any(f.startswith(("bpf_prog_", "bpf_trace_run")) for f in s.frames)


@pytest.mark.bpf
@pytest.mark.parametrize("kinds", [("raw",), ("tp",)], ids=["raw_tp", "tracepoint"])
def test_other_program_kinds(kinds):
    dw = load_example("dropwatch")
    port = free_port(socket.AF_INET6, socket.SOCK_DGRAM)
    seen = []
    with dw.DropWatch(proto="udp", address="::1", port=port, kinds=kinds) as tool:
        assert tool.chosen() == [f"{kinds[0]}_kfree_skb"]
        tool.open_events(seen.append)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"nobody listens", ("::1", port))
        wait_until(lambda: seen, 10, step=lambda: tool.poll(100), what="the drop")
    (d,) = seen
    assert (d.reason, d.proto, d.family, d.daddr, d.dport) == ("NO_SOCKET", "UDP", 6, "::1", port)
    assert d.location.startswith("__udp6_lib_rcv")


@pytest.mark.bpf
def test_cli_stack_summary():
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    with ToolProcess("dropwatch", "-s", "--top", "2", "-P", "udp", "-p", str(port)) as tool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2):
                s.sendto(b"x", ("127.0.0.1", port))
        tool.wait_for(lambda: len([ln for ln in tool.stdout if f":{port} " in ln]) == 2, 10,
                      what="two drop lines")
        assert tool.stop(signal.SIGTERM) == 0
    assert tool.stdout[0].split() == ["TIME", "PROTO", "SOURCE", "DESTINATION", "REASON",
                                      "LOCATION"]
    rows = [ln.split() for ln in tool.stdout if f":{port} " in ln]
    for row in rows:
        assert row[1] == "UDP" and row[3] == f"127.0.0.1:{port}" and row[4] == "NO_SOCKET"
        assert LOCATION.match(row[5])
    text = "\n".join(tool.stdout)
    assert "2 drops, NO_SOCKET:" in text
    assert re.search(r"^2 drops in [\d.]+s$", text, re.MULTILINE)
    assert re.search(r"^  NO_SOCKET +2$", text, re.MULTILINE)


def test_reason_names_from_btf_and_help():
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("this kernel has no BTF")
    dw = load_example("dropwatch")
    reasons = dw.DropReasons()
    names = reasons.names
    assert names[2] == "NOT_SPECIFIED" and "NO_SOCKET" in names.values()
    assert reasons(3 << 16 | 5).endswith(":5")
    assert reasons(0xFFFF) == "UNKNOWN(65535)"
    assert dw.trim_stack(["bpf_prog_x+0x1 [bpf]", "bpf_trace_run4+0x10", "sk_skb_reason_drop+0x90",
                          "tcp_v4_rcv+0x99", "ip_local_deliver+0x2"]) == \
        ["tcp_v4_rcv+0x99", "ip_local_deliver+0x2"]
    r = subprocess.run([sys.executable, str(EXAMPLES / "dropwatch" / "dropwatch.py"), "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "-s, --stacks" in r.stdout
    r = subprocess.run([sys.executable, str(EXAMPLES / "dropwatch" / "dropwatch.py"), "-P", "nope"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "unknown IP protocol" in r.stderr


def _udp_to_closed(port: int, n: int = 1) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(n):
            s.sendto(b"nobody listens", ("127.0.0.1", port))


@pytest.mark.bpf
def test_reason_include_and_exclude():
    from lcc import LccError
    dw = load_example("dropwatch")
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    seen: dict[str, list] = {"only": [], "other": [], "except": [], "all": []}
    with dw.DropWatch(port=port, reasons=["no_socket"]) as only, \
            dw.DropWatch(port=port, reasons=["NETFILTER_DROP"]) as other, \
            dw.DropWatch(port=port, exclude_reasons=["SKB_DROP_REASON_NO_SOCKET"]) as exc, \
            dw.DropWatch(port=port) as every:
        tools = {"only": only, "other": other, "except": exc, "all": every}
        for name, t in tools.items():
            t.open_events(seen[name].append)
        _udp_to_closed(port, 2)
        wait_until(lambda: len(seen["all"]) >= 2 and len(seen["only"]) >= 2, 10,
                   step=lambda: [t.poll(50) for t in tools.values()], what="the drops")
        for t in tools.values():
            t.ring_buffer_consume()
    assert {d.reason for d in seen["only"]} == {"NO_SOCKET"} and len(seen["only"]) == 2
    assert not seen["other"] and not seen["except"]
    with pytest.raises(LccError, match="unknown drop reason 'NO_SUCH_REASON'"):
        dw.DropWatch(reasons=["NO_SUCH_REASON"])


@pytest.mark.bpf
def test_normal_close_reasons_left_out_by_default():
    """An AF_UNIX socket closed with unread data frees it with SOCKET_CLOSE (6.18)."""
    dw = load_example("dropwatch")
    if "SOCKET_CLOSE" not in dw.DropReasons().names.values():
        pytest.skip("this kernel has no SOCKET_CLOSE drop reason")
    default, everything = [], []
    me = os.getpid()
    with dw.DropWatch() as d_tool, dw.DropWatch(exclude_reasons=()) as e_tool:
        d_tool.open_events(default.append)
        e_tool.open_events(everything.append)
        a, b = socket.socketpair()
        a.send(b"unread")
        b.close()
        a.close()

        def closed():
            return [d for d in everything if d.pid == me and d.reason == "SOCKET_CLOSE"]
        wait_until(closed, 10, step=lambda: e_tool.poll(100), what="the SOCKET_CLOSE drop")
        d_tool.ring_buffer_consume()
    assert closed()[0].proto == "UNIX"
    assert not [d for d in default if d.reason in dw.NORMAL_CLOSE_REASONS], default


@pytest.mark.bpf
def test_cli_wide_columns():
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    with ToolProcess("dropwatch", "-w", "-P", "udp", "-p", str(port)) as tool:
        _udp_to_closed(port)
        tool.wait_for(lambda: [ln for ln in tool.stdout if f":{port} " in ln], 10,
                      what="the drop line")
        assert tool.stop() == 0
    assert tool.stdout[0].split() == ["TIME", "PROTO", "SOURCE", "DESTINATION", "REASON",
                                      "LOCATION", "NETNS", "DEVICE", "PID", "COMM"]
    (row,) = [ln.split() for ln in tool.stdout if f":{port} " in ln]
    assert row[4] == "NO_SOCKET" and LOCATION.match(row[5])
    assert row[6] == str(os.stat("/proc/self/ns/net").st_ino)
    assert row[7] == "lo"
    # Loopback delivery runs in the sender's softirq: the sender is this test.
    assert row[8] == str(os.getpid())


@pytest.mark.bpf
def test_cli_folded_stacks_and_svg(tmp_path):
    import xml.etree.ElementTree as ET
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    svg = tmp_path / "drops.svg"
    with ToolProcess("dropwatch", "-s", "-f", "--svg", str(svg), "-P", "udp",
                     "-p", str(port)) as tool:
        _udp_to_closed(port, 3)
        # Counted in the kernel as the datagrams are sent (sendto returns after
        # loopback delivery), printed only at exit.
        assert tool.stop() == 0
    lines = [ln for ln in tool.stdout if ln.strip()]
    assert lines, tool.stderr
    stack, count = lines[0].rsplit(" ", 1)
    frames = stack.split(";")
    assert frames[-1] == "[NO_SOCKET]" and frames[-2] == "__udp4_lib_rcv", frames
    assert int(count) == 3 and "+0x" not in stack
    names = {g.get("data-name") for g in ET.parse(svg).getroot().iter(
        "{http://www.w3.org/2000/svg}g")}
    assert {"[NO_SOCKET]", "__udp4_lib_rcv"} <= names


def test_cli_folded_needs_stacks():
    r = subprocess.run([sys.executable, str(EXAMPLES / "dropwatch" / "dropwatch.py"), "-f"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "add -s" in r.stderr
