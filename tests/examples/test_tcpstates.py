"""tcpstates end to end: the life of the test's own connections, resets and a retransmit."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from toolproc import ToolProcess, load_example, wait_until

pytestmark = pytest.mark.bpf

CLIENT_LIFE = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
               ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE")]
SERVER_LIFE = [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),
               ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSE")]
LISTENER_LIFE = [("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]


@pytest.fixture(scope="module")
def mod():
    return load_example("tcpstates")


def free_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listen(family: int, host: str, port: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen()
    return s


def converse(listener: socket.socket, family: int, host: str, port: int) -> int:
    """Connect, exchange data, then close the client first and the server after EOF.

    Closing in that order (never simultaneously) makes both lives deterministic.
    Returns the client's local port.
    """
    client = socket.create_connection((host, port), timeout=5)
    cport = client.getsockname()[1]
    server, _ = listener.accept()
    server.settimeout(5)
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    client.close()
    assert server.recv(1) == b""  # the client's FIN: the server is in CLOSE_WAIT
    server.close()
    return cport


def lives(events, kind="state"):
    """Transitions per socket address, in order."""
    out: dict[int, list] = {}
    for e in events:
        if e.kind == kind:
            out.setdefault(e.skaddr, []).append(e)
    return out


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")], ids=["ipv4", "ipv6"])
def test_full_life_of_a_connection(mod, family, host):
    port = free_port(family, host)
    other_host = "::1" if family == socket.AF_INET else "127.0.0.1"
    events, wrong_family = [], []
    with mod.TcpStates(ports=[port]) as tool, mod.TcpStates(ports=[port], addr=other_host) as fam:
        tool.open_events(events.append)
        fam.open_events(wrong_family.append)
        listener = listen(family, host, port)
        cport = converse(listener, family, host, port)
        listener.close()

        def complete():
            ends = {(e.oldstate, e.newstate) for e in events if e.newstate == "CLOSE"}
            return {("FIN_WAIT2", "CLOSE"), ("LAST_ACK", "CLOSE"), ("LISTEN", "CLOSE")} <= ends

        wait_until(complete, 10, step=lambda: tool.poll(100), what="all three sockets to close")
        fam.ring_buffer_consume()

    by_sock = lives(events)
    steps = {tuple((e.oldstate, e.newstate) for e in life): life for life in by_sock.values()}
    assert set(steps) == {tuple(CLIENT_LIFE), tuple(SERVER_LIFE), tuple(LISTENER_LIFE)}, steps
    ip = 4 if family == socket.AF_INET else 6
    for e in events:
        assert e.ip == ip and e.laddr == host
    client, server, lst = (steps[tuple(x)] for x in (CLIENT_LIFE, SERVER_LIFE, LISTENER_LIFE))
    # Ports: the client's local port is bound only after CLOSE -> SYN_SENT.
    assert [(e.lport, e.rport) for e in client[1:]] == [(cport, port)] * 4
    assert client[0].rport == port
    assert [(e.lport, e.rport, e.raddr) for e in server] == [(port, cport, host)] * 5
    assert lst[0].lport == port
    # The time in the previous state is known for every transition after the first.
    for life in (client, server, lst):
        assert life[0].ms == 0
        assert all(e.ms > 0 for e in life[1:])
        assert all(a.ts <= b.ts for a, b in zip(life, life[1:]))
    # connect() and listen() run in this process.
    assert client[0].pid == os.getpid() and lst[0].pid == os.getpid()
    assert not wrong_family


CLIENT_SCRIPT = textwrap.dedent("""
    import socket, sys
    port = int(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"ping")
    c.recv(1)               # the server closes first
    c.close()
    print("done", flush=True)
""")


def test_pid_filter_follows_owned_sockets(mod):
    """-p PID: the sockets PID connects and those accepted on its listener, not the peer's."""
    port = free_port(socket.AF_INET, "127.0.0.1")
    child = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        mine, theirs = [], []
        with mod.TcpStates(pid=os.getpid()) as tool, mod.TcpStates(pid=child.pid) as ctool:
            tool.open_events(mine.append)
            ctool.open_events(theirs.append)
            listener = listen(socket.AF_INET, "127.0.0.1", port)
            child.stdin.write("go\n")
            child.stdin.flush()
            server, _ = listener.accept()
            assert server.recv(4) == b"ping"
            server.close()
            listener.close()
            assert child.stdout.readline().strip() == "done"

            def closed(evs, n):
                return sum(1 for e in evs if e.newstate == "CLOSE" and port in
                           (e.lport, e.rport)) >= n

            wait_until(lambda: closed(mine, 2), 10, step=lambda: tool.poll(100),
                       what="the server-side sockets to close")
            wait_until(lambda: closed(theirs, 1), 10, step=lambda: ctool.poll(100),
                       what="the child's socket to close")
    finally:
        child.kill()
        child.wait()
    ours = lives([e for e in mine if port in (e.lport, e.rport)])
    # The server closes first here: the accepted socket goes FIN_WAIT1 -> FIN_WAIT2 -> CLOSE.
    assert sorted(tuple((e.oldstate, e.newstate) for e in life)[:2] for life in ours.values()) \
        == [(("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")),
            (("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"))]
    assert all(e.lport == port for e in mine if port in (e.lport, e.rport))
    child_life = lives([e for e in theirs if port in (e.lport, e.rport)])
    assert len(child_life) == 1
    (life,) = child_life.values()
    assert [(e.oldstate, e.newstate) for e in life][:2] == [("CLOSE", "SYN_SENT"),
                                                             ("SYN_SENT", "ESTABLISHED")]
    assert life[0].pid == child.pid and all(e.rport == port for e in life)


def test_resets_of_a_refused_connect(mod):
    port = free_port(socket.AF_INET, "127.0.0.1")
    events = []
    with mod.TcpStates(ports=[port]) as tool:
        tool.open_events(events.append)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        wait_until(lambda: {"reset_sent", "reset_recv"} <= {e.kind for e in events}
                   and any(e.newstate == "CLOSE" for e in events), 10,
                   step=lambda: tool.poll(100), what="both resets")
    (sent,) = [e for e in events if e.kind == "reset_sent"]
    (recv,) = [e for e in events if e.kind == "reset_recv"]
    assert (sent.laddr, sent.lport, sent.raddr) == ("127.0.0.1", port, "127.0.0.1")
    assert sent.skaddr == 0  # no socket listens there
    assert sent.detail in ("NO_SOCKET", "")  # the reason exists on Linux 6.10 and later
    assert (recv.rport, recv.oldstate) == (port, "SYN_SENT")
    assert recv.lport == sent.rport
    assert [(e.oldstate, e.newstate) for e in events if e.kind == "state"] == \
        [("CLOSE", "SYN_SENT"), ("SYN_SENT", "CLOSE")]


# Runs inside the test's namespace: a connection whose data the namespace's nftables drop.
RETRANSMIT_SCRIPT = textwrap.dedent("""
    import socket, sys
    port = int(sys.argv[1])
    lst = socket.create_server(("127.0.0.1", port))
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    s, _ = lst.accept()
    print("connected", c.getsockname()[1], flush=True)
    sys.stdin.readline()    # the drop rule is in place
    c.sendall(b"x" * 1000)
    sys.stdin.readline()    # held open until the test has seen the retransmit
""")


@pytest.fixture
def netns():
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs iproute2 and nftables")
    name = f"lcct-ts-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_retransmit(mod, netns):
    port = 4242
    events = []
    with mod.TcpStates(ports=[port], resets=False) as tool:
        tool.open_events(events.append)
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                                 RETRANSMIT_SCRIPT, str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            word, cport = proc.stdout.readline().split()
            assert word == "connected"
            # Lose everything arriving for the server: the client must retransmit.
            subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], check=True, text=True,
                           input=f"table inet lcct {{\n chain drop_in {{\n"
                                 f"  type filter hook input priority 0;\n"
                                 f"  tcp dport {port} drop\n }}\n}}\n")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            wait_until(lambda: [e for e in events if e.kind == "retransmit"], 15,
                       step=lambda: tool.poll(100), what="a retransmit")
        finally:
            # Let the connection close normally rather than retransmit until it gives up.
            subprocess.run(["ip", "netns", "exec", netns, "nft", "flush", "ruleset"],
                           check=False)
            proc.kill()
            proc.wait()
    rt = [e for e in events if e.kind == "retransmit"][0]
    assert (rt.laddr, rt.lport, rt.raddr, rt.rport) == ("127.0.0.1", int(cport), "127.0.0.1", port)
    assert rt.oldstate == "ESTABLISHED"
    client = [e for e in events if e.kind == "state" and e.skaddr == rt.skaddr]
    assert [(e.oldstate, e.newstate) for e in client][:2] == [("CLOSE", "SYN_SENT"),
                                                              ("SYN_SENT", "ESTABLISHED")]


def test_cli_json_and_summary():
    port = free_port(socket.AF_INET, "127.0.0.1")
    with ToolProcess("tcpstates", "--json", "-P", str(port), "-4") as tool:
        listener = listen(socket.AF_INET, "127.0.0.1", port)
        cport = converse(listener, socket.AF_INET, "127.0.0.1", port)
        listener.close()
        tool.wait_json(lambda o: o.get("oldstate") == "LISTEN" and o.get("newstate") == "CLOSE",
                       10, what="the listener to close")
        tool.wait_json(lambda o: o.get("oldstate") == "FIN_WAIT2", 10, what="the client to close")
        tool.wait_json(lambda o: o.get("oldstate") == "LAST_ACK", 10, what="the server to close")
        assert tool.stop(signal.SIGTERM) == 0
        out = tool.json()
    states = [o for o in out if o["type"] == "state"]
    assert len(states) == 12
    client = [o for o in states if o["lport"] == cport or (o["lport"] == 0 and
                                                           o["rport"] == port)]
    assert [(o["oldstate"], o["newstate"]) for o in client] == CLIENT_LIFE
    assert out[-1]["type"] == "summary" and out[-1]["state_changes"] == 12
    assert out[-1]["transitions"]["SYN_SENT->ESTABLISHED"] == 1
