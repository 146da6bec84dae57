#!/usr/bin/env python3
"""Fleet benchmark: one compile service on its disk store vs replicas on one Redis, in one run.

Three setups, each started fresh here on 127.0.0.1 (tests/fleettools.py,
tests/haproxytools.py), measured the same way, one after the other:

- disk, 1 process        one service with the default disk store (the baseline)
- redis, 1 replica       one replica with ``LCC_STORE=redis://...``
- redis, 3 replicas      three replicas on that Redis behind haproxy
                         (deploy/fleet/haproxy.cfg)

All three run at once and are measured in turn, ``--rounds`` times, so that
the load of the machine falls on each alike; rates are the median round's,
latencies pooled over the rounds.  For each: *cold* — ``--clients`` concurrent clients ask for ``--programs``
distinct programs nobody has compiled (compiles per second, latency p50/p99,
errors, and the clang runs the replicas counted); *hit* — the same clients ask
for those programs again, ``--hits`` requests each (answers per second,
p50/p99, errors).  Requests are raw ``POST /v1/compile`` over HTTP (one
keep-alive session per client thread), so the figures are the service's, not
the client library's checks.  Ratios are against the baseline of the same run.

Every replica gets ``--slots`` compile slots (``LCC_MAX_CONCURRENCY``).  The
clients run in this process, on the same cores as the services: on a small
machine they compete for CPU, which is part of what the figures show.

Usage: ``python bench/fleet_bench.py [--clients 16] [--programs 32] [--hits 25]``.
Needs clang, bpftool, kernel BTF, redis-server and haproxy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fleettools import Replica, redis_server, start_replica  # noqa: E402
from haproxytools import haproxy  # noqa: E402
from servertools import HELLO, toolchain_missing  # noqa: E402

KERNEL = {"kernel": os.uname().release, "arch": os.uname().machine, "defines": {},
          "btf": False}


def payload(tag: str, i: int) -> dict:
    src = HELLO.replace("1024", str(1024 + i)).replace("on_getpid", f"on_getpid_{tag}")
    return {"bundle": {"main": "hello.bpf.c", "files": {"hello.bpf.c": src}}, **KERNEL}


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Phase:
    """Latencies and errors of one phase, and its wall time."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.wall = 0.0
        self.rounds: list[Phase] = []
        self.lock = threading.Lock()

    def add(self, seconds: float, error: str | None) -> None:
        with self.lock:
            (self.errors.append(error) if error else self.latencies.append(seconds))

    @property
    def rate(self) -> float:
        """Answers per second; for merged rounds, the median round's."""
        if self.rounds:
            return statistics.median(r.rate for r in self.rounds)
        return len(self.latencies) / self.wall if self.wall else 0.0

    @classmethod
    def merge(cls, rounds: list[Phase]) -> Phase:
        """The rounds as one: latencies and errors pooled, the median round's rate."""
        out = cls()
        out.rounds = list(rounds)
        for r in rounds:
            out.latencies += r.latencies
            out.errors += r.errors
            out.wall += r.wall
        return out

    def row(self, name: str, baseline: Phase | None) -> str:
        if not self.latencies:
            return f"  {name:<22} no answers ({len(self.errors)} errors)"
        ratio = f"{self.rate / baseline.rate:5.2f}x" if baseline and baseline.rate else "  base"
        return (f"  {name:<22} {self.rate:8.1f}/s {ratio}   p50 {pct(self.latencies, 50) * 1e3:7.1f} ms"
                f"   p99 {pct(self.latencies, 99) * 1e3:7.1f} ms   errors {len(self.errors)}")


def run_phase(url: str, token: str, bodies: list[dict], clients: int) -> Phase:
    """``clients`` threads share out ``bodies`` (client ``c`` sends ``bodies[c::clients]``)."""
    phase = Phase()
    start = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        with requests.Session() as s:
            s.trust_env = False
            s.headers["Authorization"] = f"Bearer {token}"
            start.wait()
            for body in bodies[c::clients]:
                t0 = time.perf_counter()
                try:
                    r = s.post(url + "/v1/compile", json=body, timeout=300)
                    error = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except requests.RequestException as e:
                    error = type(e).__name__
                phase.add(time.perf_counter() - t0, error)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, c) for c in range(clients)]
        start.wait()
        t0 = time.perf_counter()
        for f in futures:
            f.result()
        phase.wall = time.perf_counter() - t0
    return phase


def compiles(replicas: list[Replica]) -> float:
    return sum(r.metric("lcc_compiles_total") for r in replicas)


@contextlib.contextmanager
def setup(kind: str, base: Path, slots: int):
    """(url, replicas) of ``kind``: ``disk``, ``redis1`` or ``redis3``."""
    env = {"LCC_MAX_CONCURRENCY": str(slots)}
    with contextlib.ExitStack() as stack:
        store = None
        if kind != "disk":
            store = stack.enter_context(redis_server()).url
        n = 3 if kind == "redis3" else 1
        replicas = []
        try:
            for i in range(n):
                replicas.append(start_replica(base / f"{kind}-{i}", store=store, env=env))
            url = replicas[0].url
            if n > 1:
                url = stack.enter_context(haproxy([r.url for r in replicas])).url
            yield url, replicas
        finally:
            for r in replicas:
                r.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--programs", type=int, default=32, help="distinct programs (cold phase)")
    ap.add_argument("--hits", type=int, default=25, help="cache-hit requests per client")
    ap.add_argument("--slots", type=int, default=2, help="compile slots per replica")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both phases per setup")
    args = ap.parse_args()
    for need in ("redis-server", "haproxy"):
        if not shutil.which(need, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            sys.exit(f"fleet_bench: {need} is not installed (scripts/setup.sh)")
    if why := toolchain_missing():
        sys.exit(f"fleet_bench: {why}")

    names = {"disk": "disk, 1 process", "redis1": "redis, 1 replica",
             "redis3": "redis, 3 replicas+LB"}
    cold: dict[str, list[Phase]] = {k: [] for k in names}
    hit: dict[str, list[Phase]] = {k: [] for k in names}
    ran: dict[str, float] = dict.fromkeys(names, 0.0)
    base = Path(tempfile.mkdtemp(prefix="lcc-fleet-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            # All three up at once, measured in turn, round after round, so that
            # the machine's load falls on each alike.
            up = {kind: stack.enter_context(setup(kind, base, args.slots)) for kind in names}
            for kind, (url, replicas) in up.items():
                # warm each replica (its PCH, its connections) outside the figures
                for i, r in enumerate(replicas):
                    run_phase(r.url, replicas[0].token, [payload(f"warm{kind}{i}", 0)], 1)
            for n in range(args.rounds):
                for kind, (url, replicas) in up.items():
                    token = replicas[0].token
                    before = compiles(replicas)
                    bodies = [payload(f"cold{kind}{n}", i) for i in range(args.programs)]
                    cold[kind].append(run_phase(url, token, bodies, args.clients))
                    ran[kind] += compiles(replicas) - before
                    again = [bodies[i % args.programs] for i in range(args.clients * args.hits)]
                    hit[kind].append(run_phase(url, token, again, args.clients))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    load = os.getloadavg()
    print(f"fleet bench: {args.clients} clients, {args.programs} cold programs and "
          f"{args.clients * args.hits} cache hits per round, {args.slots} compile slots per replica, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    cold_all = {k: Phase.merge(v) for k, v in cold.items()}
    hit_all = {k: Phase.merge(v) for k, v in hit.items()}
    print(f"cold compiles (every program new), {args.rounds} rounds:")
    for kind, name in names.items():
        print(cold_all[kind].row(name, cold_all["disk"]) + f"   clang runs {ran[kind]:.0f}")
    print(f"cache hits (the same programs again), {args.rounds} rounds:")
    for kind, name in names.items():
        print(hit_all[kind].row(name, hit_all["disk"]))
    print("ratios are against 'disk, 1 process' measured in this run")


if __name__ == "__main__":
    main()
