#!/usr/bin/env python3
"""lcc runtime benchmark: start-to-attached time, peak RSS and ring buffer drain rate.

Prints lcc's figures beside a plain C libbpf loader's, measured in the same
run on the same object, with the targets of the runtime issue next to them.
It is a report, not a test: nothing passes or fails.

The program (bench/ring_bench.bpf.c) is a tracepoint on
syscalls/sys_enter_getppid that writes ``per_call`` 24-byte events to a BPF
ring buffer (bpf_loop) whenever the target process calls getppid().  It is
compiled once by lcc.compile.build; both loaders then open that .o:

* C: bench/c_loader.c, built here with gcc against libbpf.  It opens the
  object with bpf_object__open_file(relaxed_maps) -- lbc.h's event maps carry
  an `lbc_event` BTF member that bpftool's skeleton generator rejects --,
  sets .rodata through the object's BTF, loads, attaches every program and
  creates libbpf's ring_buffer.
* lcc: ``ClbcBase(..., obj=<the .o bytes>, rodata=...)`` then
  ``maps["events"].open_ring_buffer(callback)``; the event type comes from
  the map's BTF (LBC_RINGBUF).

Measurements (each in a fresh child process):

* start: from just before the parent spawns the child to the moment the
  child has attached and opened its ring buffer (CLOCK_MONOTONIC, shared by
  both processes), and the same measured inside the child (C: from main();
  lcc: from the ClbcBase() call, lcc already imported).  Python runs with
  its bytecode cache warm, as after ``pip install``.  The target is on
  these figures.  A second lcc child also reports its in-process time with
  libbpf.so already loaded (lcc._libbpf.lib() called, and timed, before the
  clock starts), which is where C's clock starts: ld.so has loaded libbpf
  and bound its symbols before main().
* peak RSS: VmHWM of the child right after attach.
* drain: the child fills the ring with a known number of events (getppid()
  bursts, nothing consuming), then times one consume() call that drains
  them into a callback; repeated for several rounds.  C's callback counts
  and reads each event's seq; lcc's Python callback receives each event
  decoded (a struct object) and reads its seq.  Pre-filling measures the
  consumer alone, independently of how fast the producer runs and of other
  load on the machine.  Every run checks that all events arrived in order.

Two more tables (``--tools``, on by default; ``--no-tools`` skips them,
``--only-tools`` prints only them):

* tool start: the example tools beside the libbpf-tools C tools doing the
  same job (examples/tcpstates vs /usr/sbin/tcpstates, syslat vs syscount,
  offcpu vs offcputime): from spawn to the tool's first ready line (read
  from a pseudo-terminal, so that the C tools' stdout is line-buffered as
  in a terminal), with the object cached (one unmeasured run first), and
  the child's peak RSS up to then (VmHWM).  Interleaved; lcc/C ratios.
* kernel symbols: the first ``KernelSymbols().format()`` of a process,
  time and VmHWM growth, for lcc's table read from its per-boot cache
  file, lcc's table parsed from /proc/kallsyms (the first process of a
  boot), and, as the baseline, one Python object per kallsyms line with a
  dict by name (how lcc held it before).

Needs root, kernel BTF, clang (lcc's toolchain) and gcc with libbpf headers.
Run: ``sudo /work/venv/bin/python bench/runtime_bench.py`` (``--quick`` for
fewer repetitions).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1 << 20

# -- child programs ---------------------------------------------------------------
# Kept minimal so that the start measurement counts lcc, not this script's imports.

LCC_START = r"""
import time
t0 = time.monotonic_ns()
import os, sys
from lcc import ClbcBase
t1 = time.monotonic_ns()
obj = open(sys.argv[1], "rb").read()
btf = sys.argv[2] if len(sys.argv) > 2 else None  # a minimal BTF, as a cached tool loads
tool = ClbcBase("ring_bench", obj=obj, rodata={"target_tgid": os.getpid()}, btf=btf)
buf = tool.maps["events"].open_ring_buffer(lambda event: None)
t2 = time.monotonic_ns()
hwm = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(f"attached_at_ns={t2} in_process_ns={t2 - t1} import_ns={t1 - t0} hwm_kb={hwm} "
      f"backend={buf.backend}")
"""

# The same start with libbpf.so already loaded when the clock starts, as it is
# for C: ld.so maps libbpf (and libelf, libz) and binds its symbols before
# main().  lcc._libbpf.lib() does that part (dlopen, then declaring the start
# path's functions) and is timed on its own.
LCC_START_LOADED = r"""
import time
import os, sys
from lcc import ClbcBase
from lcc._libbpf import lib
t0 = time.monotonic_ns()
lib()
t1 = time.monotonic_ns()
obj = open(sys.argv[1], "rb").read()
tool = ClbcBase("ring_bench", obj=obj, rodata={"target_tgid": os.getpid()})
buf = tool.maps["events"].open_ring_buffer(lambda event: None)
t2 = time.monotonic_ns()
print(f"in_process_ns={t2 - t1} libbpf_load_ns={t1 - t0} backend={buf.backend}")
"""

LCC_DRAIN = r"""
import os, sys, time
from lcc import ClbcBase
obj_path, ring, want, rounds, per_call, backend = sys.argv[1:7]
ring, want, rounds, per_call = int(ring), int(want), int(rounds), int(per_call)
os.environ["LCC_RINGBUF"] = backend
tool = ClbcBase("ring_bench", obj=open(obj_path, "rb").read(),
                rodata={"target_tgid": os.getpid(), "per_call": per_call},
                map_sizes={"events": ring})
count = 0
last_seq = -1

def on_event(event):
    global count, last_seq
    count += 1
    last_seq = event.seq

buf = tool.maps["events"].open_ring_buffer(on_event)
calls = -(-want // per_call)
getppid = os.getppid
clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
ns = cpu = 0
for _ in range(rounds):
    for _ in range(calls):
        getppid()
    t, c = clock(), cpu_clock()
    buf.consume()
    cpu += cpu_clock() - c
    ns += clock() - t
print(f"events={count} seconds={ns / 1e9:.9f} cpu_seconds={cpu / 1e9:.9f} "
      f"expected={calls * per_call * rounds} "
      f"last_seq={last_seq} dropped={tool.bss.dropped} backend={buf.backend}")
"""


# The tools' start: (label, lcc argv after python, its ready text, C argv, its ready text).
REPO = HERE.parent
TOOLS = [
    ("tcpstates", [str(REPO / "examples/tcpstates/tcpstates.py")], "Tracing TCP",
     ["/usr/sbin/tcpstates"], "SKADDR"),
    ("syslat vs syscount", [str(REPO / "examples/syslat/syslat.py")], "Tracing",
     ["/usr/sbin/syscount"], "Tracing"),
    # offcputime prints nothing until it ends: it is ready once asleep in sleep(3).
    ("offcpu vs offcputime", [str(REPO / "examples/offcpu/offcpu.py")], "Tracing",
     ["/usr/sbin/offcputime"], None),
]
SLEEPING = ("hrtimer_nanosleep", "do_nanosleep", "clock_nanosleep")

KSYMS = r"""
import os, sys, time
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
how = sys.argv[1]
if how == "objects":  # the baseline: a tuple per line, a dict by name (lcc before)
    import bisect
    before, t0 = hwm(), time.monotonic_ns()
    rows = []
    for line in open("/proc/kallsyms"):
        p = line.split()
        if len(p) >= 3 and p[1] not in "aAUu" and int(p[0], 16):
            rows.append((int(p[0], 16), p[2], p[3].strip("[]") if len(p) > 3 else None))
    rows.sort(key=lambda r: r[0])
    by_name = {}
    for a, n, _ in rows:
        by_name.setdefault(n, a)
    addrs = [r[0] for r in rows]; names = [r[1] for r in rows]; mods = [r[2] for r in rows]
    i = bisect.bisect_right(addrs, 0xffffffff81000000) - 1
else:
    from lcc import symbols
    if how == "parse":
        symbols.refresh()  # as the first process of a boot: parse, write the cache file
    before, t0 = hwm(), time.monotonic_ns()
    symbols.KernelSymbols().format(0xffffffff81000000)
t1 = time.monotonic_ns()
print(f"first_ns={t1 - t0} hwm_growth_kb={hwm() - before}")
"""


def parse(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.obj = work / "ring_bench.bpf.o"
        self.obj_core = work / "ring_bench_core.bpf.o"  # the same with a CO-RE relocation
        self.min_btf: Path | None = work / "ring_bench_core.btf"  # its minimal BTF
        self.c_loader: Path | None = work / "c_loader"
        self.c_missing = ""
        env = dict(os.environ)
        # As after pip install: bytecode cached (here in the scratch dir, not the repo).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        self.env = env

    # -- setup -------------------------------------------------------------------

    def prepare(self) -> None:
        from lcc.compile.bundle import Bundle
        from lcc.compile import build
        bundle = Bundle.from_path(str(HERE / "ring_bench.bpf.c"))
        self.obj.write_bytes(build(bundle).object)
        self.obj_core.write_bytes(build(bundle, defines={"BENCH_CORE": None}).object)
        # The minimal BTF lcc makes for a cached object (lcc.compile.minbtf), here by hand.
        bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
        r = subprocess.run([bpftool or "bpftool", "gen", "min_core_btf", "/sys/kernel/btf/vmlinux",
                            str(self.min_btf), str(self.obj_core)], capture_output=True,
                           check=False) if bpftool else None
        if r is None or r.returncode:
            self.min_btf = None
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            self.c_loader, self.c_missing = None, "no C compiler"
        else:
            r = subprocess.run([gcc, "-O2", "-Wall", "-o", str(self.c_loader),
                                str(HERE / "c_loader.c"), "-lbpf"],
                               capture_output=True, text=True, check=False)
            if r.returncode:
                self.c_loader, self.c_missing = None, "gcc failed: " + r.stderr.strip()[-200:]
        # Warm the bytecode cache (not measured).
        self.python(["-c", "import lcc, lcc.buffers.ring, lcc.buffers.perf, lcc.buffers.poll, "
                           "lcc.maps.keyvalue, lcc.maps.events, lcc.maps.stacks, lcc.maps.queues"])

    def python(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], env=self.env, capture_output=True,
                              text=True, check=False)

    def child(self, argv: list[str]) -> tuple[int, dict[str, str]]:
        """Run a child; returns (monotonic ns just before the spawn, its key=value output)."""
        t = time.monotonic_ns()
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if r.returncode:
            raise RuntimeError(f"{argv[0]} {' '.join(argv[1:3])}... failed:\n{r.stderr[-2000:]}")
        return t, parse(r.stdout.strip().splitlines()[-1])

    # -- measurements --------------------------------------------------------------

    def ready(self, argv: list[str], marker: str | None) -> tuple[float, float]:
        """(ms from spawn to the first output line holding ``marker``, peak RSS MiB
        up to then: the child's VmHWM when it became ready).

        The child writes to a pseudo-terminal (C stdio line-buffers there as
        in a terminal); it is stopped with SIGINT once ready.  ``marker`` None:
        ready when the child sleeps in nanosleep (/proc/PID/wchan, polled
        every 0.5 ms), for a tool that prints nothing before it ends.
        """
        import pty
        import select
        import signal
        master, slave = pty.openpty()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave, close_fds=True)
        os.close(slave)
        buf, took = b"", None
        deadline = t0 + 30
        while took is None and time.monotonic() < deadline:
            if marker is None:
                try:
                    with open(f"/proc/{p.pid}/wchan") as f:
                        if f.read() in SLEEPING:
                            took = (time.monotonic() - t0) * 1000
                            break
                except OSError:
                    pass
            r, _, _ = select.select([master], [], [], 0.5 if marker else 0.0005)
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if marker is not None and marker.encode() in buf:
                took = (time.monotonic() - t0) * 1000
        hwm = 0.0
        try:  # peak RSS up to ready (VmHWM), before the stop and the exit report
            with open(f"/proc/{p.pid}/status") as f:
                hwm = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration):
            pass
        p.send_signal(signal.SIGINT)
        try:
            while select.select([master], [], [], 5)[0] and os.read(master, 65536):
                pass
        except OSError:
            pass
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
        os.close(master)
        if took is None:
            raise RuntimeError(f"{argv[-1]} printed no {marker!r}:\n"
                               f"{buf.decode(errors='replace')[-1500:]}")
        return took, hwm or ru.ru_maxrss / 1024

    def tool_starts(self) -> dict[str, dict[str, list[float]]]:
        """Warm start to the ready line and peak RSS of each example tool and its C peer."""
        out: dict[str, dict[str, list[float]]] = {}
        tools = [t for t in TOOLS if os.path.exists(t[3][0])]
        for label, lcc_argv, lmark, c_argv, cmark in tools:  # fill the caches, unmeasured
            self.ready([sys.executable, *lcc_argv], lmark)
            self.ready(c_argv, cmark)
        for _ in range(self.args.runs):
            for label, lcc_argv, lmark, c_argv, cmark in tools:
                d = out.setdefault(label, {})
                for who, argv, mark in (("c", c_argv, cmark),
                                        ("lcc", [sys.executable, *lcc_argv], lmark)):
                    ms, rss = self.ready(argv, mark)
                    d.setdefault(f"{who}_ms", []).append(ms)
                    d.setdefault(f"{who}_rss", []).append(rss)
        return out

    def ksyms(self) -> dict[str, list[dict]]:
        """First kernel-symbol lookup of a process: objects (baseline), lcc parsing, lcc cached."""
        out: dict[str, list[dict]] = {"objects": [], "parse": [], "cached": []}
        for _ in range(max(self.args.runs // 2, 2)):
            for how, rs in out.items():
                _, kv = self.child([sys.executable, "-c", KSYMS, how])
                rs.append({"ms": int(kv["first_ns"]) / 1e6,
                           "mib": int(kv["hwm_growth_kb"]) / 1024})
        return out

    def start(self) -> dict[str, dict[str, list[float]]]:
        out: dict[str, dict[str, list[float]]] = {"c": {}, "lcc": {}}
        for _ in range(self.args.runs):  # interleaved, so load changes hit both alike
            runs = [("lcc", "", [sys.executable, "-c", LCC_START, str(self.obj)]),
                    ("lcc", "_core", [sys.executable, "-c", LCC_START, str(self.obj_core)])]
            if self.min_btf:
                runs.append(("lcc", "_minbtf", [sys.executable, "-c", LCC_START,
                                                str(self.obj_core), str(self.min_btf)]))
            if self.c_loader:
                runs.insert(0, ("c", "", [str(self.c_loader), "start", str(self.obj)]))
                runs.insert(2, ("c", "_core", [str(self.c_loader), "start", str(self.obj_core)]))
            for who, suffix, argv in runs:
                spawned, kv = self.child(argv)
                d = out[who]
                if suffix:  # the CO-RE object: its start only
                    d.setdefault("spawn" + suffix, []).append(
                        (int(kv["attached_at_ns"]) - spawned) / 1e6)
                    d.setdefault("inproc" + suffix, []).append(int(kv["in_process_ns"]) / 1e6)
                    d.setdefault("hwm" + suffix, []).append(int(kv["hwm_kb"]) / 1024)
                    continue
                if who == "lcc":
                    _, kv2 = self.child([sys.executable, "-c", LCC_START_LOADED, str(self.obj)])
                    d.setdefault("inproc_loaded", []).append(int(kv2["in_process_ns"]) / 1e6)
                    d.setdefault("libload", []).append(int(kv2["libbpf_load_ns"]) / 1e6)
                d.setdefault("spawn", []).append((int(kv["attached_at_ns"]) - spawned) / 1e6)
                d.setdefault("inproc", []).append(int(kv["in_process_ns"]) / 1e6)
                d.setdefault("hwm", []).append(int(kv["hwm_kb"]) / 1024)
                if "import_ns" in kv:
                    d.setdefault("import", []).append(int(kv["import_ns"]) / 1e6)
        return out

    def drains(self) -> dict[str, list[dict]]:
        """Drain rates of the C loader, lcc's default consumer and lcc's libbpf consumer.

        Interleaved like the start runs.  libbpf's per-record ctypes path is
        slow, so it drains one round of a third of the events.
        """
        a = self.args
        out: dict[str, list[dict]] = {"c": [], "mmap": [], "libbpf": []}
        for _ in range(a.repeats):
            for who, results in out.items():
                if who == "c" and not self.c_loader:
                    continue
                events, rounds = ((a.events, a.rounds) if who != "libbpf"
                                  else (max(a.events // 3, 1000), 1))
                results.append(self.drain_once(who, events, rounds))
        return {k: v for k, v in out.items() if v}

    def drain_once(self, who: str, events: int, rounds: int) -> dict:
        a = self.args
        common = [str(self.obj), str(a.ring_mib * MIB), str(events), str(rounds),
                  str(a.per_call)]
        if who == "c":
            argv = [str(self.c_loader), "drain", *common]
        else:
            argv = [sys.executable, "-c", LCC_DRAIN, *common, who]
        _, kv = self.child(argv)
        n, exp = int(kv["events"]), int(kv["expected"])
        ok = n == exp and int(kv["last_seq"]) == exp - 1 and int(kv.get("dropped", 0)) == 0
        return {"rate": n / float(kv["seconds"]),
                "cpu_rate": n / max(float(kv["cpu_seconds"]), 1e-9),
                "ok": ok, "events": n, "expected": exp, "backend": kv.get("backend", "")}


# -- report ------------------------------------------------------------------------

def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], fmt: str) -> str:
    return f"{format(med(xs), fmt)} [{format(min(xs), fmt)}..{format(max(xs), fmt)}]"


def rate_cell(rs: list[dict], key: str) -> str:
    rates = [r[key] / 1e6 for r in rs]
    bad = [r for r in rs if not r["ok"]]
    cell = f"{med(rates):.2f} [{min(rates):.2f}..{max(rates):.2f}]"
    if bad:
        cell += f"  (!) {len(bad)} run(s) lost events: {bad[0]['events']}/{bad[0]['expected']}"
    return cell


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9, help="start measurements per loader")
    ap.add_argument("--events", type=int, default=1_500_000, help="events per drain round")
    ap.add_argument("--rounds", type=int, default=3, help="drain rounds per child")
    ap.add_argument("--repeats", type=int, default=3, help="drain children per consumer")
    ap.add_argument("--per-call", type=int, default=64, help="events per getppid()")
    ap.add_argument("--ring-mib", type=int, default=64, help="ring buffer size for the drain")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--only-tools", action="store_true",
                    help="only the example tools' start and the kernel symbols tables")
    ap.add_argument("--no-tools", dest="tools", action="store_false",
                    help="skip the example tools' start and the kernel symbols tables")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.repeats, a.rounds = 3, 1, 2
    if a.events * 32 >= a.ring_mib * MIB:
        ap.error("--events of 32-byte records must fit in --ring-mib")
    if os.geteuid() != 0:
        print("runtime_bench needs root (loading BPF programs)", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="lcc-bench-"))
    try:
        b = Bench(a, work)
        if not a.only_tools:
            b.prepare()
            st = b.start()
            drains = b.drains()
        tools = b.tool_starts() if a.tools else {}
        ksyms = b.ksyms() if a.tools else {}
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch directory kept: {work}")

    if not a.only_tools:
        report(a, b, st, drains)
    if a.tools:
        report_tools(a, tools, ksyms)
    return 0


def report(a, b: Bench, st: dict, drains: dict) -> None:
    c, lc = st["c"], st["lcc"]
    have_c = bool(b.c_loader)
    try:
        import bcc  # noqa: F401
        bcc_note = "installed, not measured by this script"
    except ImportError:
        bcc_note = "not installed; the runtime issue quotes 1.10 M/s on this machine"

    w1, w2, w3 = 44, 24, 24
    print()
    print(f"lcc runtime bench  |  kernel {platform.release()}  |  {os.cpu_count()} CPUs  |  "
          f"Python {platform.python_version()}")
    print("program: bench/ring_bench.bpf.c (tracepoint syscalls/sys_enter_getppid -> "
          "BPF ring buffer, 24-byte events)")
    print("object compiled once by lcc.compile.build; both loaders open the same .o "
          "(C: bpf_object__open_file, relaxed_maps)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"figures: median [min..max]; start over {a.runs} runs each, interleaved; "
          f"load average at the end: {load}")
    print()
    hdr = f"{'':{w1}}{'C libbpf loader':>{w2}}{'lcc':>{w3}}  {'lcc/C':>6}  target"
    print(hdr)
    print("-" * len(hdr) + "-" * 12)

    def row(label, ckey, fmt, unit, target="", ratio=True):
        cv = spread(c[ckey], fmt) + unit if have_c and ckey in c else "-"
        lv = spread(lc[ckey], fmt) + unit if ckey in lc else "-"
        r = f"{med(lc[ckey]) / med(c[ckey]):5.1f}x" if ratio and have_c and ckey in c else ""
        print(f"{label:{w1}}{cv:>{w2}}{lv:>{w3}}  {r:>6}  {target}")

    row("start: spawn -> attached + ring open", "spawn", ".1f", " ms", "<= 2x C")
    row("  of which: in process, open -> attached", "inproc", ".2f", " ms", "<= 2x C")
    row("  of which: interpreter + import lcc", "import", ".1f", " ms", ratio=False)
    # A second view, not the target's measure: lcc's in-process clock includes
    # loading libbpf.so, which C's (from main()) does not.
    lv = spread(lc["inproc_loaded"], ".2f") + " ms"
    r = f"{med(lc['inproc_loaded']) / med(c['inproc']):5.1f}x" if have_c else ""
    print(f"{'  in process, libbpf.so already loaded (*)':{w1}}{'(same as above)':>{w2}}"
          f"{lv:>{w3}}  {r:>6}")
    row("  (*) lcc: loading libbpf.so (dlopen, binding)", "libload", ".2f", " ms",
        ratio=False)
    row("peak RSS (VmHWM after attach)", "hwm", ".1f", " MiB", "lcc <= 25 MiB", ratio=False)
    print("(*) as C's clock starts: ld.so has loaded libbpf.so and bound its symbols before "
          "main(); lcc's first row includes that (the target's measure)")
    print("with a CO-RE relocation (-DBENCH_CORE: libbpf parses the kernel's BTF, as for "
          "real tools):")
    row("start: spawn -> attached + ring open", "spawn_core", ".1f", " ms", "<= 2x C")
    row("  of which: in process, open -> attached", "inproc_core", ".2f", " ms", "<= 2x C")
    row("peak RSS (VmHWM after attach)", "hwm_core", ".1f", " MiB", "lcc <= 25 MiB")
    if "spawn_minbtf" in lc:
        print("the same object loaded by lcc with its minimal BTF (bpftool gen min_core_btf), "
              "as lcc loads a cached object; C as above, with the kernel's BTF:")
        for label, key, fmt, unit in (("start: spawn -> attached + ring open", "spawn", ".1f",
                                       " ms"),
                                      ("  of which: in process, open -> attached", "inproc",
                                       ".2f", " ms"),
                                      ("peak RSS (VmHWM after attach)", "hwm", ".1f", " MiB")):
            cv = spread(c[key + "_core"], fmt) + unit if have_c else "-"
            lv = spread(lc[key + "_minbtf"], fmt) + unit
            r = (f"{med(lc[key + '_minbtf']) / med(c[key + '_core']):5.1f}x" if have_c else "")
            print(f"{label:{w1}}{cv:>{w2}}{lv:>{w3}}  {r:>6}")
    print()
    n_ev = f"{a.rounds} x {a.events / 1e6:g} M events"
    print(f"ring buffer drain into a callback: {n_ev} pre-filled in a {a.ring_mib} MiB ring, "
          f"{a.repeats} child(ren) each, interleaved")
    print("M events/s, median [min..max]; 'per CPU-s' divides by the consumer thread's CPU time "
          "(discounts time other processes held the CPU)")
    w, wc = 56, 26
    hdr2 = f"{'':{w}}{'wall clock':>{wc}}{'per CPU-s':>{wc}}  target"
    print(hdr2)
    print("-" * (len(hdr) + 12))

    def drow(label: str, rs: list[dict] | None, target: str = "", note: str = "") -> None:
        if rs is None:
            print(f"{label:{w}}{note}")
            return
        print(f"{label:{w}}{rate_cell(rs, 'rate'):>{wc}}{rate_cell(rs, 'cpu_rate'):>{wc}}  "
              f"{target}{note}")

    if "c" in drains:
        drow("C: ring_buffer__consume, C callback reads seq", drains["c"])
    else:
        drow("C loader", None, note=f"not built ({b.c_missing})")
    mm = drains["mmap"]
    label = ("lcc: mmap consumer, Python callback, decoded event" if mm[0]["backend"] == "mmap"
             else f"lcc: default consumer ({mm[0]['backend']}), decoded event")
    drow(label, mm, ">= 2 M/s")
    lb = drains["libbpf"]
    drow("lcc: libbpf consumer, ctypes callback per event", lb,
         note=f"(1 x {lb[0]['expected'] / 1e6:g} M events a child)")
    print(f"{'BCC (python3-bpfcc)':{w}}{bcc_note}")
    print()


def report_tools(a, tools: dict, ksyms: dict) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"example tools vs libbpf-tools (C), warm start (object cached) to the first ready "
          f"line and peak RSS until then, {a.runs} runs each, interleaved; load average: {load}")
    w1, w2 = 24, 26
    hdr = (f"{'':{w1}}{'C start':>{w2}}{'lcc start':>{w2}}  {'lcc/C':>6}"
           f"{'C peak RSS':>{w2}}{'lcc peak RSS':>{w2}}  {'lcc/C':>6}")
    print(hdr)
    print("-" * len(hdr))
    for label, d in tools.items():
        r1 = med(d["lcc_ms"]) / med(d["c_ms"])
        r2 = med(d["lcc_rss"]) / med(d["c_rss"])
        print(f"{label:{w1}}{spread(d['c_ms'], '.1f') + ' ms':>{w2}}"
              f"{spread(d['lcc_ms'], '.1f') + ' ms':>{w2}}  {r1:5.2f}x"
              f"{med(d['c_rss']):>{w2 - 4}.1f} MiB{med(d['lcc_rss']):>{w2 - 4}.1f} MiB  {r2:5.2f}x")
    print("targets: start <= 1.5x C (moonshot 1.0x), peak RSS <= 1.25x C")
    if not tools:
        print("(no libbpf-tools C tools in /usr/sbin: nothing measured)")
    print()
    if ksyms:
        print("kernel symbols: the first KernelSymbols().format() of a process, median [min..max]")
        base = med([r["ms"] for r in ksyms["objects"]])
        base_mib = med([r["mib"] for r in ksyms["objects"]])
        for how, label in (("objects", "a Python object per line (baseline, lcc before)"),
                           ("parse", "lcc: flat arrays, parsed (first process of a boot)"),
                           ("cached", "lcc: flat arrays, mapped from the per-boot cache")):
            ms = [r["ms"] for r in ksyms[how]]
            mib = [r["mib"] for r in ksyms[how]]
            print(f"{label:56}{spread(ms, '.1f') + ' ms':>26}  {med(ms) / base:5.2f}x"
                  f"{spread(mib, '.1f') + ' MiB':>24}  {med(mib) / max(base_mib, 1e-9):5.2f}x")
        print()


if __name__ == "__main__":
    sys.exit(main())
