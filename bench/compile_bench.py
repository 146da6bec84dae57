#!/usr/bin/env python3
"""Compile benchmark: plain clang vs the compile service, in one run.

Prints, for the same tcpconnlat-sized program (several programs and maps,
CO-RE reads on struct sock, a local header):

- plain clang            clang run directly, no service, no PCH (the baseline)
- service cold, whole vmlinux.h, no PCH
                         a request the service has not seen, with a define that
                         rules out both the cut and the PCH
- service cold, whole vmlinux.h (PCH)
                         the same with a ``##`` in a comment, which rules out
                         only the cut (as a bundle that pastes tokens does)
- service cold           a request the service has not seen: vmlinux.h cut to
                         the program's types, after the precompiled lbc.h
- service cache hit      the same request again (HTTP round trip)
- small program cold     a 15-line program, for scale (struct sock's type graph
                         is what makes tcpconnlat-sized programs slower)
- throughput             8 concurrent clients, every request new (a -D varies)

Targets (printed next to the figures, never asserted): cold <= 60 ms,
cache hit <= 10 ms, zero errors under the concurrent run.

Before the service, the one-off CLI table (``--only cli`` alone): per example
tool, ``lcc compile examples/X/X.bpf.c --no-cache --backend local`` in a fresh
process against plain ``clang -g -O2 -target bpf`` with the same headers and a
vmlinux.h generated beforehand, with the toolchain cache warm (vmlinux.h, its
index, the precompiled headers and the toolchain identity made by an earlier
run) and empty (a fresh ``LCC_CACHE_DIR`` per run, so lcc makes vmlinux.h
itself).  Samples interleaved (plain, warm, empty, next example ...), medians,
ratios to plain clang; targets: warm <= 1.0x (moonshot 0.5x), empty <= 1.2x.
Python runs with its bytecode cache (as after ``pip install``).

By default the service is started here with uvicorn on 127.0.0.1 and a
temporary state directory; ``--server URL [--token T]`` measures a running one
instead.  Usage: ``python bench/compile_bench.py [--runs 15] [--clients 8]``.
``--baseline-tree DIR`` also starts the service from another checkout (say,
``git worktree add DIR <commit before a change>``) and interleaves its cold
compiles with this one's, and adds that checkout's empty-cache one-off compile
to the CLI samples: the before/after figures of one run.

``--compare-clang clang clang-19`` instead compares compilers (the choice
``LCC_CLANG`` makes): every test program and example tool compiled by the
toolchain as the service runs it (cut vmlinux.h + PCH) and against the whole
vmlinux.h without PCH, samples of the compilers interleaved, medians per
program, the first compiler the baseline.  Programs a compiler cannot
compile are listed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from lcc_server.server import Spawned, spawn

REPO = Path(__file__).resolve().parent.parent

TCPCONNLAT_H = """\
/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef __TCPCONNLAT_H
#define __TCPCONNLAT_H

#define TASK_COMM_LEN 16

struct event {
\tunion {
\t\t__u32 saddr_v4;
\t\t__u8 saddr_v6[16];
\t};
\tunion {
\t\t__u32 daddr_v4;
\t\t__u8 daddr_v6[16];
\t};
\tchar comm[TASK_COMM_LEN];
\t__u64 delta_us;
\t__u64 ts_us;
\t__u32 tgid;
\tint af;
\t__u16 lport;
\t__u16 dport;
};

#endif /* __TCPCONNLAT_H */
"""

TCPCONNLAT_C = """\
// SPDX-License-Identifier: GPL-2.0
/* TCP connect latency: time from connect() to the SYN-ACK, per socket. */
#include "lbc.h"
#include "tcpconnlat.h"

#define AF_INET    2
#define AF_INET6   10

const volatile __u64 targ_min_us = 0;
const volatile pid_t targ_tgid = 0;

struct piddata {
\tchar comm[TASK_COMM_LEN];
\tu64 ts;
\tu32 tgid;
};

LBC_HASH(start, struct sock *, struct piddata, 4096);
LBC_RINGBUF(events, struct event, 256 * 1024);
LBC_ARRAY(hist, u32, u64, LBC_HIST_SLOTS);
LBC_PERCPU_ARRAY(counters, u32, u64, 4);

static int trace_connect(struct sock *sk)
{
\tu32 tgid = bpf_get_current_pid_tgid() >> 32;
\tstruct piddata piddata = {};

\tif (targ_tgid && targ_tgid != tgid)
\t\treturn 0;

\tbpf_get_current_comm(&piddata.comm, sizeof(piddata.comm));
\tpiddata.ts = bpf_ktime_get_ns();
\tpiddata.tgid = tgid;
\tbpf_map_update_elem(&start, &sk, &piddata, 0);
\treturn 0;
}

static int handle_tcp_rcv_state_process(void *ctx, struct sock *sk)
{
\tstruct piddata *piddatap;
\tstruct event *event;
\ts64 delta;
\tu64 ts;
\tu32 key = 0;

\tif (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_SYN_SENT)
\t\treturn 0;

\tpiddatap = bpf_map_lookup_elem(&start, &sk);
\tif (!piddatap)
\t\treturn 0;

\tts = bpf_ktime_get_ns();
\tdelta = (s64)(ts - piddatap->ts);
\tif (delta < 0)
\t\tgoto cleanup;

\tlbc_hist_add(hist, delta / 1000U);
\tif (delta / 1000U < targ_min_us)
\t\tgoto cleanup;

\tevent = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
\tif (!event) {
\t\tu64 *drops = bpf_map_lookup_elem(&counters, &key);
\t\tif (drops)
\t\t\t(*drops)++;
\t\tgoto cleanup;
\t}
\t__builtin_memcpy(&event->comm, piddatap->comm, sizeof(event->comm));
\tevent->delta_us = delta / 1000U;
\tevent->ts_us = ts / 1000;
\tevent->tgid = piddatap->tgid;
\tevent->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
\tevent->dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
\tevent->af = BPF_CORE_READ(sk, __sk_common.skc_family);
\tif (event->af == AF_INET) {
\t\tevent->saddr_v4 = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
\t\tevent->daddr_v4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);
\t} else {
\t\tBPF_CORE_READ_INTO(&event->saddr_v6, sk,
\t\t\t\t   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
\t\tBPF_CORE_READ_INTO(&event->daddr_v6, sk,
\t\t\t\t   __sk_common.skc_v6_daddr.in6_u.u6_addr32);
\t}
\tbpf_ringbuf_submit(event, 0);

cleanup:
\tbpf_map_delete_elem(&start, &sk);
\treturn 0;
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(tcp_v4_connect, struct sock *sk)
{
\treturn trace_connect(sk);
}

SEC("kprobe/tcp_v6_connect")
int BPF_KPROBE(tcp_v6_connect, struct sock *sk)
{
\treturn trace_connect(sk);
}

SEC("kprobe/tcp_rcv_state_process")
int BPF_KPROBE(tcp_rcv_state_process, struct sock *sk)
{
\treturn handle_tcp_rcv_state_process(ctx, sk);
}

SEC("tracepoint/tcp/tcp_destroy_sock")
int tcp_destroy_sock(struct trace_event_raw_tcp_event_sk *ctx)
{
\tconst struct sock *sk = ctx->skaddr;

\tbpf_map_delete_elem(&start, &sk);
\treturn 0;
}

SEC("fentry/tcp_v4_connect")
int BPF_PROG(fentry_tcp_v4_connect, struct sock *sk)
{
\treturn trace_connect(sk);
}

SEC("fentry/tcp_v6_connect")
int BPF_PROG(fentry_tcp_v6_connect, struct sock *sk)
{
\treturn trace_connect(sk);
}

SEC("fentry/tcp_rcv_state_process")
int BPF_PROG(fentry_tcp_rcv_state_process, struct sock *sk)
{
\treturn handle_tcp_rcv_state_process(ctx, sk);
}

char LICENSE[] SEC("license") = "GPL";
"""


HELLO_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

LBC_HASH(counts, u32, u64, 1024);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tu32 pid = bpf_get_current_pid_tgid() >> 32;

\tlbc_count(&counts, &pid);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def bundle(tag: str = "") -> dict:
    main = f"// bench {tag}\n" + TCPCONNLAT_C if tag else TCPCONNLAT_C
    return {"main": "tcpconnlat.bpf.c",
            "files": {"tcpconnlat.bpf.c": main, "tcpconnlat.h": TCPCONNLAT_H}}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def summary(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return f"median {ms(statistics.median(s))}   p90 {ms(p90)}   n={len(s)}"


# -- baseline: plain clang ----------------------------------------------------------

def whole_vmlinux_h(work: Path) -> Path:
    """``work/vmlinux/vmlinux.h``: the running kernel's whole header, as plain
    clang is handed it; returns its directory."""
    vm = work / "vmlinux"
    vm.mkdir()
    bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    with open(vm / "vmlinux.h", "wb") as f:
        subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
                       stdout=f, check=True)
    return vm


def plain_clang(runs: int, work: Path) -> list[float]:
    """clang -g -O2 -target bpf on the same bundle, directly, no PCH."""
    vm = whole_vmlinux_h(work)
    src = work / "src"
    src.mkdir()
    for name, text in bundle()["files"].items():
        (src / name).write_text(text)
    argv = ["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I", str(src),
            "-I", str(REPO / "lbc_include"), "-I", str(vm), "-c", "tcpconnlat.bpf.c",
            "-o", str(work / "out.o")]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=src, check=True)
        times.append(time.perf_counter() - t0)
    return times


# -- the service ------------------------------------------------------------------------

def start_service(state: Path, concurrency: int,
                  tree: Path | None = None) -> tuple[Spawned, str]:
    """The service on a free port of 127.0.0.1 (its code from ``tree``'s
    client/compile_server/toolchain when given); returns it and its token."""
    token = secrets.token_hex(16)
    env = {"LCC_STATE_DIR": str(state), "LCC_TOKEN": token,
           "LCC_MAX_CONCURRENCY": str(concurrency)}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(tree / d) for d in
                                            ("client", "compile_server", "toolchain"))
    try:
        child = spawn(env)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    return child, token


def timed_post(client: httpx.Client, body: dict) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    r = client.post("/v1/compile", json=body)
    return time.perf_counter() - t0, r


# -- compilers compared ---------------------------------------------------------------

def bench_programs() -> dict[str, object]:
    """name -> bundle of every test program and example tool."""
    from lcc.compile.bundle import Bundle
    paths = sorted([*REPO.glob("tests/progs/*.bpf.c"), *REPO.glob("tests/kernel/progs/*.bpf.c"),
                    *REPO.glob("examples/*/*.bpf.c")])
    out: dict[str, object] = {p.relative_to(REPO).as_posix(): Bundle.from_path(str(p))
                              for p in paths}
    out["bench/tcpconnlat"] = Bundle("tcpconnlat.bpf.c", bundle()["files"])
    return out


def compare_clangs(clangs: list[str], runs: int) -> None:
    from lcc_toolchain.errors import CompileFailed
    from lcc_toolchain.toolchain import Toolchain

    programs = bench_programs()
    with tempfile.TemporaryDirectory(prefix="lcc-bench-clang-") as tmp:
        modes = {"service": {}, "whole": {}}
        for c in clangs:
            modes["service"][c] = Toolchain(clang=c, work_dir=Path(tmp) / c)
            modes["whole"][c] = Toolchain(clang=c, work_dir=Path(tmp) / f"{c}-whole",
                                          cut=False, pch=False)
        times = {(m, c, n): [] for m in modes for c in clangs for n in programs}
        failed: dict[tuple[str, str], str] = {}
        sizes: dict[tuple[str, str], int] = {}
        for m, tcs in modes.items():  # warm-up: vmlinux.h, its index, the PCHs
            for c, tc in tcs.items():
                for n, b in programs.items():
                    try:
                        sizes[(c, n)] = len(tc.compile(b).object)
                    except CompileFailed as e:
                        failed[(c, n)] = str(e)
        for r in range(runs):
            order = clangs if r % 2 == 0 else clangs[::-1]  # neither always goes first
            for n, b in programs.items():
                for m, tcs in modes.items():
                    for c in order:
                        if (c, n) in failed:
                            continue
                        t0 = time.perf_counter()
                        tcs[c].compile(b)
                        times[(m, c, n)].append(time.perf_counter() - t0)

    base = clangs[0]
    print(f"lcc compilers compared ({runs} runs, medians; {os.cpu_count()} CPUs)")
    for c in clangs:
        print(f"  {c}: {modes['service'][c].identity()['clang']}")
    width = max(len(n) for n in programs)
    head = "".join(f"{c + ' ' + m:>22}" for m in modes for c in clangs)
    print(f"  {'program':<{width}}{head}")
    totals = {(m, c): 0.0 for m in modes for c in clangs}
    for n in programs:
        row = []
        for m in modes:
            for c in clangs:
                if (c, n) in failed:
                    row.append(f"{'compile error':>22}")
                    continue
                med = statistics.median(times[(m, c, n)])
                row.append(ms(med).rjust(22))
                if all((x, n) not in failed for x in clangs):
                    totals[(m, c)] += med
        print(f"  {n:<{width}}{''.join(row)}")
    for m in modes:
        line = "   ".join(f"{c} {ms(totals[(m, c)])} ({totals[(m, c)] / totals[(m, base)]:.2f}x)"
                          for c in clangs)
        print(f"  total of medians, {m:<8}{line}")
    both = [n for n in programs if all((c, n) in sizes for c in clangs)]
    for c in clangs[1:]:
        ratio = sum(sizes[(c, n)] for n in both) / sum(sizes[(base, n)] for n in both)
        print(f"  object size {c} / {base}: {ratio:.2f}")
    for (c, n), why in sorted(failed.items()):
        print(f"  {c} cannot compile {n}: {why[:160]}")


# -- one-off CLI compile vs plain clang -------------------------------------------

def _examples() -> list[Path]:
    return sorted(REPO.glob("examples/*/*.bpf.c"))


def _tool(src: Path) -> str:
    return src.name.removesuffix(".bpf.c")


def _timed(argv: list[str], **kw) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed:\n{r.stderr[-800:]}")
    return dt


def oneoff_cli(runs: int, work: Path, baseline_tree: Path | None = None) -> None:
    """The one-off ``lcc compile`` table (see the module docstring); with
    ``baseline_tree``, also that checkout's empty-cache compile, interleaved."""
    vm = whole_vmlinux_h(work)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / d) for d in ("client", "compile_server", "toolchain")]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for name in ("LCC_SERVER", "LCC_BACKEND"):
        env.pop(name, None)
    warm_env = {**env, "LCC_CACHE_DIR": str(work / "warm")}
    base_env = None
    if baseline_tree is not None:
        base_env = {**env, "PYTHONPYCACHEPREFIX": str(work / "pycache-base"),
                    "PYTHONPATH": os.pathsep.join(str(baseline_tree.resolve() / d) for d in
                                                  ("client", "compile_server", "toolchain"))}
    multiarch = Path("/usr/include") / f"{os.uname().machine}-linux-gnu"

    def plain(src: Path) -> list[str]:
        return ["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                "-I", str(src.parent), "-I", str(REPO / "lbc_include"), "-I", str(vm),
                *(["-idirafter", str(multiarch)] if multiarch.is_dir() else []),
                "-c", str(src), "-o", str(work / "plain.o")]

    def lcc(src: Path) -> list[str]:
        return [sys.executable, "-m", "lcc.cli", "compile", str(src), "--no-cache",
                "--backend", "local", "-o", str(work / "lcc.o")]

    examples = _examples()
    # Warm-up, not measured: bytecode, the warm toolchain cache, the page cache.
    # (The run that makes vmlinux.h leaves its saved index and the PCHs to the
    # next run: the first example runs twice.)
    for src in [examples[0], *examples]:
        _timed(plain(src))
        _timed(lcc(src), env=warm_env)
    if base_env is not None:  # its bytecode
        _timed(lcc(examples[0]), env={**base_env, "LCC_CACHE_DIR": str(work / "bw")})
        shutil.rmtree(work / "bw", ignore_errors=True)
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(runs):
        for src in examples:
            empty = work / f"empty-{r}-{_tool(src)}"
            samples = [("plain", lambda: _timed(plain(src))),
                       ("warm", lambda: _timed(lcc(src), env=warm_env)),
                       ("empty", lambda: _timed(lcc(src), env={**env,
                                                               "LCC_CACHE_DIR": str(empty)}))]
            if base_env is not None:
                samples.append(("base", lambda: _timed(lcc(src), env={
                    **base_env, "LCC_CACHE_DIR": str(empty) + "-base"})))
            if r % 2:  # neither always runs first
                samples.reverse()
            for kind, fn in samples:
                times.setdefault((_tool(src), kind), []).append(fn())
            shutil.rmtree(empty, ignore_errors=True)
            shutil.rmtree(str(empty) + "-base", ignore_errors=True)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"one-off lcc compile vs plain clang  ({runs} runs each, interleaved, medians; "
          f"{os.cpu_count()} CPUs; load average at the end: {load})")
    print(f"  {'example':<12}{'plain clang':>14}{'lcc, warm':>14}{'warm/clang':>12}"
          f"{'lcc, empty':>14}{'empty/clang':>13}")
    ratios: dict[str, list[float]] = {"warm": [], "empty": []}
    for src in examples:
        med = {k: statistics.median(times[(_tool(src), k)])
               for k in ("plain", "warm", "empty")}
        for k in ratios:
            ratios[k].append(med[k] / med["plain"])
        print(f"  {_tool(src):<12}{ms(med['plain']):>14}{ms(med['warm']):>14}"
              f"{med['warm'] / med['plain']:>11.2f}x{ms(med['empty']):>14}"
              f"{med['empty'] / med['plain']:>12.2f}x")
    print(f"  {'worst':<12}{'':>14}{'':>14}{max(ratios['warm']):>11.2f}x{'':>14}"
          f"{max(ratios['empty']):>12.2f}x")
    if base_env is not None:
        def base_ratio(src: Path) -> float:
            return (statistics.median(times[(_tool(src), "base")])
                    / statistics.median(times[(_tool(src), "plain")]))
        print(f"  empty cache, {baseline_tree} (interleaved): "
              + ", ".join(f"{_tool(src)} {base_ratio(src):.2f}x" for src in examples)
              + " of plain clang")
    print("  targets: warm <= 1.00x (moonshot 0.50x), empty <= 1.20x")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="samples per sequential figure")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--per-client", type=int, default=6, help="requests per client")
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 1,
                    help="LCC_MAX_CONCURRENCY of the service started here")
    ap.add_argument("--server", help="measure this running service instead")
    ap.add_argument("--token", default=os.environ.get("LCC_TOKEN"))
    ap.add_argument("--compare-clang", nargs="+", metavar="CLANG",
                    help="compare these compilers instead (the first is the baseline)")
    ap.add_argument("--only", choices=("cli", "service"),
                    help="only the one-off CLI table, or only the service figures")
    ap.add_argument("--cli-runs", type=int, default=5,
                    help="samples per example in the one-off CLI table")
    ap.add_argument("--baseline-tree", type=Path, metavar="DIR",
                    help="also start the service from this checkout (e.g. the commit "
                         "before a change) and interleave its cold compiles with this one's")
    args = ap.parse_args()
    if args.compare_clang:
        compare_clangs(args.compare_clang, args.runs)
        return
    if args.only != "service":
        with tempfile.TemporaryDirectory(prefix="lcc-bench-cli-") as tmp:
            oneoff_cli(args.cli_runs, Path(tmp), args.baseline_tree)
    if args.only == "cli":
        return

    errors = 0
    with tempfile.TemporaryDirectory(prefix="lcc-bench-") as tmp:
        tmp = Path(tmp)
        baseline = plain_clang(args.runs, tmp)
        service = None
        if args.server:
            url, token = args.server.rstrip("/"), args.token
        else:
            service, token = start_service(tmp / "state", args.concurrency)
            url = service.url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
                # Warm-up: the service builds vmlinux.h and its PCH once per kernel.
                t_first, r = timed_post(c, {"bundle": bundle("warm-" + secrets.token_hex(4))})
                r.raise_for_status()
                run_id = secrets.token_hex(4)

                no_pch, whole, cold, hits, small = [], [], [], [], []
                for i in range(args.runs):
                    dt, r = timed_post(c, {"bundle": {"main": "hello.bpf.c", "files": {
                        "hello.bpf.c": f"// small {run_id}-{i}\n" + HELLO_C}}})
                    errors += r.status_code != 200
                    small.append(dt)
                for i in range(args.runs):
                    dt, r = timed_post(c, {"bundle": bundle(f"np-{run_id}-{i}"),
                                           "defines": {"_BENCH_NO_PCH": None}})
                    errors += r.status_code != 200
                    no_pch.append(dt)
                for i in range(args.runs):
                    body = bundle(f"wh-{run_id}-{i}")
                    body["files"][body["main"]] += "// ## keeps the whole vmlinux.h\n"
                    dt, r = timed_post(c, {"bundle": body})
                    errors += r.status_code != 200
                    whole.append(dt)
                base = base_client = None
                base_cold: list[float] = []
                if args.baseline_tree:
                    base, base_token = start_service(tmp / "base-state", args.concurrency,
                                                     args.baseline_tree.resolve())
                    base_client = httpx.Client(base_url=base.url, timeout=120, headers={
                        "Authorization": f"Bearer {base_token}"})
                    timed_post(base_client, {"bundle": bundle("warm-" + run_id)}) \
                        [1].raise_for_status()
                try:
                    # Interleaved with the baseline tree's service, when there is one.
                    for i in range(args.runs):
                        dt, r = timed_post(c, {"bundle": bundle(f"cold-{run_id}-{i}")})
                        errors += r.status_code != 200 or r.json()["cached"]
                        cold.append(dt)
                        if base_client is not None:
                            dt, r = timed_post(base_client,
                                               {"bundle": bundle(f"cold-{run_id}-{i}")})
                            errors += r.status_code != 200 or r.json()["cached"]
                            base_cold.append(dt)
                finally:
                    if base is not None:
                        base_client.close()
                        base.stop()
                hit_body = {"bundle": bundle(f"cold-{run_id}-0")}
                for _ in range(args.runs * 4):
                    dt, r = timed_post(c, hit_body)
                    errors += r.status_code != 200 or not r.json()["cached"]
                    hits.append(dt)

            def client_run(n: int) -> list[tuple[float, int]]:
                out = []
                with httpx.Client(base_url=url, headers=headers, timeout=120) as cc:
                    for j in range(args.per_client):
                        dt, r = timed_post(cc, {"bundle": bundle(),
                                                "defines": {"BENCH_ID": f"{run_id}_{n}_{j}"}})
                        out.append((dt, r.status_code))
                return out

            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                results = [x for part in pool.map(client_run, range(args.clients)) for x in part]
            wall = time.perf_counter() - t0
            conc_errors = sum(status != 200 for _, status in results)
            errors += conc_errors
        finally:
            if service is not None:
                service.stop()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"lcc compile benchmark  (tcpconnlat-sized bundle: {len(TCPCONNLAT_C.splitlines())} "
          f"+ {len(TCPCONNLAT_H.splitlines())} lines; {os.cpu_count()} CPUs; "
          f"service concurrency {args.concurrency if not args.server else 'remote'}; "
          f"load average at the end: {load})")
    print(f"  first request (builds vmlinux.h + PCH unless warm): {ms(t_first)}")
    print(f"  plain clang (baseline)                 {summary(baseline)}")
    print(f"  service cold, whole vmlinux.h, no PCH  {summary(no_pch)}")
    print(f"  service cold, whole vmlinux.h (PCH)    {summary(whole)}")
    print(f"  service cold (cut vmlinux.h + PCH)     {summary(cold)}   target <= 60 ms")
    if base_cold:
        print(f"    the same, service of {args.baseline_tree} (interleaved)\n"
              f"                                         {summary(base_cold)}   this tree: "
              f"{statistics.median(cold) / statistics.median(base_cold):.2f}x of it")
    print(f"  service cache hit                      {summary(hits)}   target <= 10 ms")
    print(f"  (small program, cold                   {summary(small)})")
    lat = [dt for dt, _ in results]
    print(f"  {args.clients} clients x {args.per_client} cold compiles: "
          f"{len(results) / wall:6.1f} compiles/s over {wall:.2f} s; latency {summary(lat)}")
    print(f"  errors: {errors} (concurrent run: {conc_errors})   target 0")
    print(f"  speed-up of cold over plain clang: "
          f"{statistics.median(baseline) / statistics.median(cold):.1f}x")


if __name__ == "__main__":
    main()
