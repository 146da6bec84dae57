#!/usr/bin/env python3
"""lcc's example tools beside the C (libbpf-tools) and bpftrace tools that do the same job.

For each tool and each of its peers (run interleaved, ``--runs`` times,
medians printed):

* **start**: spawn -> ready, in ms, with the lcc object already cached
  (one unmeasured run first warms the cache), and the peak RSS of that
  run (VmHWM from /proc, read until it exits: wait4's ``ru_maxrss`` would
  include this bench's own memory, which a child holds until its exec; CPU
  times come from wait4).  "Ready" is: for lcc tools, their ready
  line on stderr ("... Hit Ctrl-C to end.", printed once attached); for
  C tools, their first line on stdout (their header, printed once attached;
  run under ``stdbuf -oL`` here so that it is not held in a buffer;
  offcputime prints nothing before it stops, so for it: the moment the
  process holds its first BPF link fd, an underestimate); for bpftrace, the line its ``BEGIN`` probe prints (BEGIN fires once every
  probe is attached).  The process is stopped with SIGINT at once.
* **load** (tools with a load): a bounded load made by ``bench/loadgen.c``
  pinned to CPU 0 while the tool runs pinned to CPU 1: loopback TCP
  connects (tcpstates, tcpconnlat), UDP datagrams to a closed port
  (dropwatch: one NO_SOCKET drop each), a getppid() storm (syslat, and
  ``lcc run --json`` of bench/storm.bpf.c into a file).  The generator is
  started first and waits on its stdin, so that a tool can filter on its
  pid; it starts once the tool is ready (lcc, bpftrace: as above; C
  tools: once the process holds a BPF link fd, plus 200 ms, since their
  stdout goes to a file and stays in its buffer).  Then the tool gets until
  its output stops growing for half a second, and SIGINT.  Figures:

  - delivered/produced: events in the tool's output that the generator
    made (lines naming its port, or its comm; the count the tool reports
    for getppid for the counting tools), over the events it made.  The
    events a connect makes (state changes per connect, plus the listener's
    own two) and the drops a datagram makes are counted once per bench run
    with a bpftrace counter over a small run ("calibration" line);
  - CPU per event: the tool's CPU time (user + system, from wait4) minus
    the median of its start runs, over the events produced;
  - workload slowdown: the generator's own time with the tool tracing over
    its time with no tracer, both measured in this run, interleaved.

Ratios against the best peer are the main figures (lower is better for
lcc except "delivered").  The load average is printed: on a busy machine
the absolute figures mean little.  Needs root, tracefs, gcc, and for the
peers /usr/sbin/{tcpstates,syscount,offcputime,tcpconnlat} and bpftrace
(missing peers are left out).  Python children run with their bytecode
cache enabled.

    bench/tools_bench.py                       # every tool, 3 runs
    bench/tools_bench.py --quick               # 1 run, a tenth of the load
    bench/tools_bench.py --tools tcpstates,dropwatch --rows load --connects 20000
    bench/tools_bench.py --rows decode         # only read_batch's bulk decoding rates
    bench/tools_bench.py --tools tcpstates,dropwatch --ring-mib 2,4,8 --peers lcc
                                               # lcc's tools with each ring size, side by side

The decode row times, in memory, a million 96-byte events decoded by the
per-event callback path and by ``RingBuffer.read_batch``'s bulk decoding
(tuples, and numpy arrays when the ``numpy`` extra is installed).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOAD_CPU, TOOL_CPU = 0, 1
TCP_PORT, UDP_PORT = 31337, 31338  # below the ephemeral range: no client takes them
GETPPID_NR = 110  # x86_64
READY_TIMEOUT = 120.0


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cache on, as users have it
    paths = [str(ROOT / "client"), str(ROOT / "compile_server"), str(ROOT / "toolchain")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def lcc_tool(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "examples" / name / f"{name}.py"), *args]


def lines_with_token(token: str) -> Callable[[str], int]:
    def count(text: str) -> int:
        return sum(1 for ln in text.splitlines() if token in ln.split())
    return count


def lines_containing(*needles: str) -> Callable[[str], int]:
    def count(text: str) -> int:
        return sum(1 for ln in text.splitlines() if all(n in ln for n in needles))
    return count


def first_int(pattern: str) -> Callable[[str], int]:
    rx = re.compile(pattern, re.M)

    def count(text: str) -> int:
        m = rx.search(text)
        return int(m.group(1)) if m else 0
    return count


@dataclass
class Peer:
    """One program doing a tool's job: how to run it, see it ready, count its events."""

    who: str                                   # lcc, C, bpftrace
    argv: Callable[[int], list[str]]           # given the generator's pid (0 for start runs)
    ready: str            # "stderr:REGEX", "stdout:REGEX" ("|" between several) or "fd"
    delivered: Callable[[str], int] | None = None  # events in its stdout (load runs)
    binary: str = ""                           # must exist for the peer to run

    def available(self) -> bool:
        return not self.binary or bool(shutil.which(self.binary)) or os.path.exists(self.binary)


@dataclass
class Tool:
    name: str
    peers: list[Peer]
    load: str | None = None                    # tcp, udp, getppid
    # events per operation of the load, and besides, when not those calibrated for it
    per_op: tuple[int, int, str] | None = None


BPFTRACE_READY = 'BEGIN { printf("ready\\n"); } '

TOOLS = [
    Tool("tcpstates", load="tcp", peers=[
        Peer("lcc", lambda pid: lcc_tool("tcpstates"), r"stderr:Hit Ctrl-C",
             lines_with_token(str(TCP_PORT))),
        Peer("C", lambda pid: ["/usr/sbin/tcpstates"], r"stdout:SKADDR",
             lines_with_token(str(TCP_PORT)), binary="/usr/sbin/tcpstates"),
        Peer("bpftrace", lambda pid: [
            "bpftrace", "-e", BPFTRACE_READY +
            "tracepoint:sock:inet_sock_set_state /args->protocol == 6/ { "
            'printf("%llx %d %s %d %d %d %d\\n", args->skaddr, pid, comm, args->sport, '
            "args->dport, args->oldstate, args->newstate); }"],
            r"stdout:^ready", lines_with_token(str(TCP_PORT)), binary="bpftrace"),
    ]),
    Tool("dropwatch", load="udp", peers=[
        Peer("lcc", lambda pid: lcc_tool("dropwatch"), r"stderr:Hit Ctrl-C",
             lines_containing(f"127.0.0.1:{UDP_PORT} ", "NO_SOCKET")),
        Peer("bpftrace", lambda pid: [
            "bpftrace", "-e", BPFTRACE_READY +
            "tracepoint:skb:kfree_skb /args->reason > 1/ { "
            'printf("%s %d %d %s\\n", comm, pid, args->reason, ksym(args->location)); }'],
            r"stdout:^ready", lines_containing("loadgen ", "udp"), binary="bpftrace"),
    ]),
    Tool("syslat", load="getppid", peers=[
        Peer("lcc", lambda pid: lcc_tool("syslat", "-p", str(pid), "--json", "getppid")
             if pid else lcc_tool("syslat", "-c", "nosuchcomm", "getppid"),
             r"stderr:Hit Ctrl-C", first_int(r'"count": ?(\d+)')),
        Peer("C", lambda pid: ["/usr/sbin/syscount", "-L"] + (["-p", str(pid)] if pid else []),
             r"stdout:Tracing|stdout:syscalls", first_int(r"^\s*getppid\s+(\d+)"),
             binary="/usr/sbin/syscount"),
        Peer("bpftrace", lambda pid: [
            "bpftrace", "-e", BPFTRACE_READY +
            f"tracepoint:raw_syscalls:sys_enter /pid == {pid}/ {{ @start[tid] = nsecs; }} "
            f"tracepoint:raw_syscalls:sys_exit /@start[tid]/ {{ "
            f"@lat[args->id] = hist(nsecs - @start[tid]); @n[args->id] = count(); "
            f"delete(@start[tid]); }}"],
            r"stdout:^ready", first_int(rf"^@n\[{GETPPID_NR}\]: (\d+)"), binary="bpftrace"),
    ]),
    Tool("offcpu", peers=[
        Peer("lcc", lambda pid: lcc_tool("offcpu"), r"stderr:Hit Ctrl-C"),
        # prints nothing until it stops: ready is its first BPF link
        Peer("C", lambda pid: ["/usr/sbin/offcputime"], "fd", binary="/usr/sbin/offcputime"),
    ]),
    Tool("tcpconnlat", load="tcp", per_op=(1, 0, "one connect latency per connect"), peers=[
        Peer("lcc", lambda pid: lcc_tool("tcpconnlat"), r"stderr:Hit Ctrl-C",
             lines_with_token(str(TCP_PORT))),
        Peer("C", lambda pid: ["/usr/sbin/tcpconnlat"], r"stdout:PID",
             lines_with_token(str(TCP_PORT)), binary="/usr/sbin/tcpconnlat"),
    ]),
    Tool("lcc-run", load="getppid", peers=[
        Peer("lcc", lambda pid: [sys.executable, "-m", "lcc.cli", "run", "--json",
                                 str(HERE / "storm.bpf.c")],
             r"stderr:Hit Ctrl-C", lines_containing('"comm": "loadgen"')),
        # the same with the ring sized for the whole storm (2M events of 40 bytes)
        Peer("lcc-64MiB", lambda pid: [sys.executable, "-m", "lcc.cli", "run", "--json",
                                       "--map-size", "events=67108864",
                                       str(HERE / "storm.bpf.c")],
             r"stderr:Hit Ctrl-C", lines_containing('"comm": "loadgen"')),
        Peer("bpftrace", lambda pid: [
            "bpftrace", "-e", BPFTRACE_READY +
            "tracepoint:syscalls:sys_enter_getppid { "
            'printf("%llu %d %d %s\\n", nsecs, pid, tid, comm); }'],
            r"stdout:^ready", lines_containing(" loadgen"), binary="bpftrace"),
    ]),
]


@dataclass
class Result:
    ready_ms: float | None = None
    rss_mib: float = 0.0
    cpu_s: float = 0.0
    delivered: int = 0
    load_s: float = 0.0
    error: str = ""


@dataclass
class Figures:
    start: dict[str, list[Result]] = field(default_factory=dict)
    load: dict[str, list[Result]] = field(default_factory=dict)
    bare: list[float] = field(default_factory=list)  # generator alone, seconds
    produced: int = 0


def pinned(cpu: int) -> Callable[[], None]:
    def pin() -> None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass  # one CPU: run unpinned
    return pin


_reaped: dict[int, tuple[int, object]] = {}  # pid -> (exit code, rusage)


def exited(p: subprocess.Popen) -> bool:
    """Whether a tool process has exited; reaps it with wait4 (its rusage is kept:
    Popen.poll() would reap it and lose that)."""
    if p.pid in _reaped:
        return True
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        _reaped[p.pid] = (os.waitstatus_to_exitcode(status), ru)
        p.returncode = _reaped[p.pid][0]
        return True
    return False


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a running process, KiB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def holds_bpf_link(pid: int) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


class Runner:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.env = tool_env()
        self.loadgen = work / "loadgen"

    def build(self) -> None:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            sys.exit("tools_bench: needs gcc (or cc) for bench/loadgen.c")
        subprocess.run([gcc, "-O2", "-Wall", "-o", str(self.loadgen), str(HERE / "loadgen.c")],
                       check=True)

    def amount(self, load: str) -> int:
        return {"tcp": self.args.connects, "udp": self.args.drops,
                "getppid": self.args.syscalls}[load]

    def gen_argv(self, load: str, n: int) -> list[str]:
        port = {"tcp": TCP_PORT, "udp": UDP_PORT}.get(load)
        return [str(self.loadgen), "wait", load] + ([str(port)] if port else []) + [str(n)]

    # -- one process -------------------------------------------------------------

    def spawn(self, peer: Peer, pid: int, tag: str, stdbuf: bool) -> tuple:
        out = open(self.work / f"{tag}.out", "w+b")  # noqa: SIM115 - closed by finish()
        err = open(self.work / f"{tag}.err", "w+b")  # noqa: SIM115
        argv = peer.argv(pid)
        if stdbuf and peer.who == "C":
            argv = ["stdbuf", "-oL"] + argv
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=self.env, preexec_fn=pinned(TOOL_CPU), cwd=str(ROOT))
        return p, out, err

    def wait_ready(self, p: subprocess.Popen, peer: Peer, out, err, use_fd: bool) -> float:
        t0 = time.monotonic()
        if peer.ready == "fd" or (use_fd and peer.who == "C"):
            while not holds_bpf_link(p.pid):
                self._alive(p, t0)
                time.sleep(0.001)
            t = time.monotonic()
            if use_fd:
                time.sleep(0.2)  # the rest of its programs and its perf buffer
            return t
        stream, rx = peer.ready.split(":", 1)
        f = out if stream == "stdout" else err
        pats = [re.compile(r.split(":", 1)[-1], re.M) for r in peer.ready.split("|")]
        while True:
            f.seek(0)
            text = f.read().decode(errors="replace")
            if any(pt.search(text) for pt in pats):
                return time.monotonic()
            self._alive(p, t0)
            time.sleep(0.001)

    def _alive(self, p: subprocess.Popen, t0: float) -> None:
        if exited(p):
            raise RuntimeError(f"exited with status {p.returncode} before it was ready")
        if time.monotonic() - t0 > READY_TIMEOUT:
            raise RuntimeError("not ready in time")

    def finish(self, p: subprocess.Popen, out, err) -> tuple[float, float, str, str]:
        """SIGINT, then wait4: (peak RSS MiB, CPU s, stdout, stderr).

        The peak RSS is the process's VmHWM, read from /proc until it exits:
        wait4's ru_maxrss would also count this bench's own memory, which a
        child carries from fork (or vfork) until its exec."""
        hwm = vm_hwm(p.pid)
        if not exited(p):
            p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while not exited(p):
            hwm = max(hwm, vm_hwm(p.pid))
            if time.monotonic() > deadline:
                p.kill()
                deadline = time.monotonic() + 30
            time.sleep(0.002)
        ru = _reaped.pop(p.pid)[1]
        out.seek(0)
        err.seek(0)
        texts = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        out.close()
        err.close()
        return hwm / 1024, ru.ru_utime + ru.ru_stime, texts[0], texts[1]

    # -- rows -------------------------------------------------------------------

    def start_run(self, tool: Tool, peer: Peer) -> Result:
        r = Result()
        t0 = time.monotonic()
        p, out, err = self.spawn(peer, 0, f"{tool.name}-{peer.who}-start", stdbuf=True)
        try:
            r.ready_ms = (self.wait_ready(p, peer, out, err, use_fd=False) - t0) * 1000
        except RuntimeError as e:
            r.error = str(e)
        r.rss_mib, r.cpu_s, _, stderr = self.finish(p, out, err)
        if r.error:
            r.error += ": " + stderr.strip()[-200:]
        return r

    def load_run(self, tool: Tool, peer: Peer | None) -> Result:
        """The generator with ``peer`` tracing (None: the generator alone)."""
        assert tool.load is not None
        r = Result()
        gen = subprocess.Popen(self.gen_argv(tool.load, self.amount(tool.load)),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               preexec_fn=pinned(LOAD_CPU))
        proc = None
        try:
            if peer is not None:
                proc, out, err = self.spawn(peer, gen.pid, f"{tool.name}-{peer.who}-load",
                                            stdbuf=False)
                try:
                    self.wait_ready(proc, peer, out, err, use_fd=True)
                except RuntimeError as e:
                    r.error = str(e)
            if not r.error:
                gen.stdin.write("go\n")
                gen.stdin.close()
                line = gen.stdout.readline().split()
                r.load_s = float(line[2]) if line[:1] == ["done"] else 0.0
            else:
                gen.kill()  # the tracer failed: no load to make
            gen.wait()
            if proc is not None:
                self.settle(proc, out)
                r.rss_mib, r.cpu_s, stdout, stderr = self.finish(proc, out, err)
                r.delivered = peer.delivered(stdout) if peer.delivered else 0
                if r.error:
                    r.error += ": " + stderr.strip()[-200:]
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
        return r

    def settle(self, p: subprocess.Popen, out) -> None:
        """Until the tool's output has not grown for half a second (at most 60 s)."""
        last, still, deadline = -1, time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline and not exited(p):
            size = os.fstat(out.fileno()).st_size
            if size != last:
                last, still = size, time.monotonic()
            elif time.monotonic() - still >= 0.5:
                return
            time.sleep(0.05)

    # -- calibration ----------------------------------------------------------------

    def calibrate(self, load: str) -> tuple[int, int, str]:
        """(events per operation, events per run besides) for tcp/udp, from a
        bpftrace counter over two small runs; (1, 0) for getppid."""
        if load == "getppid":
            return 1, 0, "one event per call"
        if not shutil.which("bpftrace"):
            guess = (10, 2) if load == "tcp" else (1, 0)
            return guess[0], guess[1], "not calibrated (no bpftrace): assumed"
        if load == "tcp":
            prog = ("tracepoint:sock:inet_sock_set_state /args->protocol == 6 && "
                    f"(args->sport == {TCP_PORT} || args->dport == {TCP_PORT})/ {{ @ = count(); }}")
        else:
            prog = 'tracepoint:skb:kfree_skb /comm == "loadgen" && args->reason > 1/ { @ = count(); }'
        counts = []
        for n in (200, 400):
            gen = [str(self.loadgen), load, str(TCP_PORT if load == "tcp" else UDP_PORT), str(n)]
            res = subprocess.run(["bpftrace", "-e", prog, "-c", " ".join(gen)],
                                 capture_output=True, text=True, timeout=120)
            m = re.search(r"^@: (\d+)", res.stdout, re.M)
            counts.append(int(m.group(1)) if m else 0)
        per = (counts[1] - counts[0]) // 200
        extra = counts[0] - 200 * per
        return per, extra, f"bpftrace counted {counts[0]} for 200, {counts[1]} for 400"


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> str:
    # "-" where there is nothing to compare: a missing figure, or a CPU per event
    # within noise of zero (the counting tools do their work in the kernel).
    return f"{a / b:.2f}x" if a == a and b == b and b > 0.005 and a >= 0 else "-"


def report_tool(tool: Tool, fig: Figures, peers: list[Peer], calib: str) -> None:
    loaded = bool(tool.load and fig.load)
    print(f"\n== {tool.name}" + (f": {fig.produced} events produced ({calib})"
                                if loaded else ""))
    ok = {p.who: [r for r in fig.start.get(p.who, []) if not r.error] for p in peers}
    lok = {p.who: [r for r in fig.load.get(p.who, []) if not r.error] for p in peers}
    bare = med(fig.bare)
    head = f"{'':<10} {'start ms':>9} {'RSS MiB':>8}"
    if loaded:
        head += f" {'delivered':>10} {'CPU us/ev':>10} {'slowdown':>9} {'load RSS':>9}"
    print(head)
    rows: dict[str, dict[str, float]] = {}
    for p in peers:
        st, ld = ok[p.who], lok[p.who]
        start_cpu = med([r.cpu_s for r in st])
        row = {"start": med([r.ready_ms for r in st]), "rss": med([r.rss_mib for r in st])}
        line = f"{p.who:<10} {row['start']:>9.1f} {row['rss']:>8.1f}"
        if loaded:
            produced = fig.produced or 1
            row["delivered"] = med([r.delivered / produced for r in ld])
            row["cpu"] = max(0.0, med([(r.cpu_s - start_cpu) / produced * 1e6 for r in ld]))
            row["slowdown"] = med([r.load_s / bare for r in ld]) if bare else float("nan")
            row["load_rss"] = med([r.rss_mib for r in ld])
            line += (f" {row['delivered'] * 100:>9.1f}% {row['cpu']:>10.2f} "
                     f"{row['slowdown']:>8.2f}x {row['load_rss']:>9.1f}")
        rows[p.who] = row
        print(line)
        for r in fig.start.get(p.who, []) + fig.load.get(p.who, []):
            if r.error:
                print(f"{'':<10} error: {r.error}")
                break
    if "lcc" in rows and len(rows) > 1:
        others = [w for w in rows if not w.startswith("lcc")]
        for w in others:
            a, b = rows["lcc"], rows[w]
            line = f"{'lcc/' + w:<10} {ratio(a['start'], b['start']):>9} {ratio(a['rss'], b['rss']):>8}"
            if loaded:
                line += (f" {ratio(a['delivered'], b['delivered']):>10} "
                         f"{ratio(a['cpu'], b['cpu']):>10} {ratio(a['slowdown'], b['slowdown']):>9} "
                         f"{ratio(a['load_rss'], b['load_rss']):>9}")
            print(line)
    if loaded:
        print(f"{'no tracer':<10} generator {bare * 1000:.1f} ms")


def decode_rates(n: int = 1 << 20) -> None:
    """Events/s decoded from ring records in memory (no kernel): the per-event
    callback path, and read_batch's bulk decoding without and with numpy."""
    sys.path[:0] = [str(ROOT / "client")]
    from collections import deque

    from lcc.btf import Array, Int, Member, Struct
    from lcc.buffers import batch
    from lcc.codecs import codec
    from lcc.ringbuf_mmap import EventDelivery, record_size

    u8, u16, u32, u64 = Int(1, "u8", 1), Int(2, "u16", 2), Int(3, "u32", 4), Int(4, "u64", 8)
    char = Int(5, "char", 1, signed=True, is_char=True)
    # tcpstates' struct event: 96 bytes
    ev = Struct(10, "event", 96, tuple(Member(nm, t, off * 8) for nm, t, off in (
        ("skaddr", u64, 0), ("ts_ns", u64, 8), ("delta_ns", u64, 16),
        ("saddr", Array(11, "", u8, 16), 24), ("daddr", Array(12, "", u8, 16), 40),
        ("comm", Array(13, "", char, 16), 56), ("pid", u32, 72), ("oldstate", u32, 76),
        ("newstate", u32, 80), ("detail", u32, 84), ("family", u16, 88), ("sport", u16, 90),
        ("dport", u16, 92), ("kind", u16, 94))))
    c = codec(ev)
    per_run = 4096
    rec = (96).to_bytes(4, "little") + bytes(4) + bytes(range(96))
    run = rec * per_run
    runs = [(run, per_run, 96)] * (n // per_run)
    total = per_run * len(runs)  # a multiple of 65536
    assert record_size(96) == len(rec)
    rates = {}
    sink: deque = deque(maxlen=0)
    d = EventDelivery(sink.append, c)
    t = time.perf_counter()
    for data, k, length in runs:
        d(memoryview(data), k, length)
    rates["per-event callback"] = total / (time.perf_counter() - t)
    ring = memoryview(run)

    def bulk(use_numpy: bool) -> float:
        """read_batch's work for batches of 65536 events: copy out of the ring
        (one bytearray per batch), decode, touch a column."""
        t = time.perf_counter()
        for _ in range(total // 65536):
            buf = bytearray()
            for _ in range(65536 // per_run):
                buf += ring
            b = batch.decode_runs([(buf, 65536, 96)], c, use_numpy=use_numpy)
            sum(b["pid"]) if not b.numpy else b["pid"].sum()
        return total / (time.perf_counter() - t)

    rates["read_batch, tuples"] = bulk(False)
    try:
        rates["read_batch, numpy"] = bulk(True)
    except ImportError:
        rates["read_batch, numpy"] = float("nan")
    base = rates["per-event callback"]
    print(f"\n== bulk decoding of {total} 96-byte events (tcpstates' struct event), in memory")
    for k, v in rates.items():
        cell = "numpy not installed" if v != v else f"{v / 1e6:8.2f} M events/s  {v / base:6.2f}x"
        print(f"{k:<22} {cell}")


# Tools whose lcc version takes --ring-mib (the size of its events ring).
RING_TOOLS = {"tcpstates", "dropwatch"}


def with_ring_sizes(tool: Tool, sizes: str) -> list[Peer]:
    """``tool``'s peers, its lcc peer once per ring size in ``sizes`` ("2,4,8") when it has one."""
    mibs = [int(x) for x in sizes.split(",") if x.strip()]
    if not mibs or tool.name not in RING_TOOLS:
        return list(tool.peers)
    out = []
    for p in tool.peers:
        if p.who != "lcc":
            out.append(p)
            continue
        for mib in mibs:
            out.append(Peer(f"lcc-{mib}MiB", lambda pid, p=p, mib=mib: p.argv(pid) + [
                "--ring-mib", str(mib)], p.ready, p.delivered, p.binary))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", default=",".join(t.name for t in TOOLS),
                    help="comma-separated, from: " + ", ".join(t.name for t in TOOLS))
    ap.add_argument("--rows", default="start,load,decode",
                    help="start, load, decode (bulk decoding, no kernel), comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per figure")
    ap.add_argument("--connects", type=int, default=20000)
    ap.add_argument("--drops", type=int, default=50000)
    ap.add_argument("--syscalls", type=int, default=2000000)
    ap.add_argument("--quick", action="store_true", help="1 run and a tenth of the load")
    ap.add_argument("--ring-mib", default="",
                    help="comma-separated ring sizes in MiB: the tools with --ring-mib run "
                         "once per size (as lcc-<N>MiB) instead of with their default")
    ap.add_argument("--peers", default="",
                    help="comma-separated: only the peers whose name starts with one of "
                         "these (e.g. lcc)")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
        args.connects //= 10
        args.drops //= 10
        args.syscalls //= 10
    if os.geteuid() != 0:
        sys.exit("tools_bench: needs root (BPF, tracefs)")
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = set(names) - {t.name for t in TOOLS}
    if unknown:
        sys.exit(f"tools_bench: unknown tools: {', '.join(sorted(unknown))}")
    rows = set(args.rows.split(","))
    if "decode" in rows:
        decode_rates()
    if not rows & {"start", "load"}:
        return 0
    print(f"tools_bench: {args.runs} runs, load average "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg())
          + f", {os.cpu_count()} CPUs (generator on {LOAD_CPU}, tool on {TOOL_CPU})")
    with tempfile.TemporaryDirectory(prefix="lcc-tools-bench-") as tmp:
        run = Runner(args, Path(tmp))
        run.build()
        for tool in [t for t in TOOLS if t.name in names]:
            peers = [p for p in with_ring_sizes(tool, args.ring_mib) if p.available()]
            if args.peers:
                peers = [p for p in peers
                         if p.who.startswith(tuple(args.peers.split(",")))]
            missing = [p.who for p in tool.peers if not p.available()]
            if missing:
                print(f"\n({tool.name}: {', '.join(missing)} not installed, left out)")
            fig = Figures()
            for p in peers:  # warm: the lcc object cached, the binaries in the page cache
                run.start_run(tool, p)
            calib = ""
            if tool.load and "load" in rows:
                per, extra, calib = tool.per_op or run.calibrate(tool.load)
                fig.produced = run.amount(tool.load) * per + extra
            for _ in range(args.runs):
                for p in peers:
                    fig.start.setdefault(p.who, []).append(run.start_run(tool, p))
                if tool.load and "load" in rows:
                    fig.bare.append(run.load_run(tool, None).load_s)
                    for p in peers:
                        fig.load.setdefault(p.who, []).append(run.load_run(tool, p))
            report_tool(tool, fig, peers, calib)
    print("\nload average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
