"""A fleet as deploy/fleet runs it, on 127.0.0.1: three compile-service replicas
(separate processes, separate state directories) on one redis-server, with
Debian's haproxy in front running deploy/fleet/haproxy.cfg.

- 64 concurrent clients asking for 16 distinct programs through haproxy get
  each program compiled exactly once fleet-wide (the sum of
  ``lcc_compiles_total`` over the replicas is 16);
- a replica killed with SIGKILL while it serves a compile costs no client
  request (haproxy retries it on another replica);
- without haproxy, a client given every replica (``LCC_SERVER=a,b,c``) fails
  over from a killed one by itself.

Every client pins the fleet's one signing key, so an answer from any replica
verifies.  The replicas, Redis and haproxy are real processes started here
(tests/fleettools.py, tests/haproxytools.py) and stopped at the end.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleettools import Replica, redis_server, start_replica
from haproxytools import haproxy
from lcc.compile.bundle import Bundle
from lcc.compile.service import ServiceBackend
from lcc.compile.trust import TrustPolicy, parse_keys
from servertools import HELLO, toolchain_missing

pytestmark = [pytest.mark.fleet, pytest.mark.server, pytest.mark.toolchain]

PROGRAMS = 16
CLIENTS = 64
KERNEL = dict(kernel=os.uname().release, arch=os.uname().machine, defines={}, btf=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Redis, three replicas on it, haproxy in front: (replicas, haproxy)."""
    why = toolchain_missing()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("fleet")
    with redis_server() as redis:
        replicas: list[Replica] = []
        try:
            for i in range(3):
                replicas.append(start_replica(base / f"replica{i + 1}", store=redis.url))
            with haproxy([r.url for r in replicas]) as proxy:
                yield replicas, proxy
        finally:
            for r in replicas:
                r.stop()


def programs(tag: str) -> list[Bundle]:
    """``PROGRAMS`` distinct bundles (map sizes differ), unlike any of another ``tag``."""
    out = []
    for i in range(PROGRAMS):
        src = HELLO.replace("1024", str(1024 + i)).replace("on_getpid", f"on_getpid_{tag}")
        out.append(Bundle("hello.bpf.c", {"hello.bpf.c": src}))
    return out


def client_for(replicas: list[Replica], url: str) -> ServiceBackend:
    """A client of ``url`` (one URL or a list) trusting the fleet's one key."""
    keys = parse_keys(replicas[0].public_key, source="fleet")
    return ServiceBackend(url, token=replicas[0].token, push_btf=False,
                          trust=TrustPolicy(keys), timeout=(5.0, 180.0))


def burst(url: str, replicas: list[Replica], bundles: list[Bundle], *, during=None):
    """``CLIENTS`` clients at once, client ``i`` asking for ``bundles[i % len]``, each
    with its own backend (no shared state); ``during()`` runs once they are under way.
    Returns ``(results, errors)``: digest per client index, exception per index."""
    start = threading.Barrier(CLIENTS + 1)
    results: dict[int, str] = {}
    errors: dict[int, BaseException] = {}

    def one(i: int) -> None:
        backend = client_for(replicas, url)
        start.wait()
        try:
            results[i] = backend.compile(bundles[i % len(bundles)], **KERNEL).digest
        except Exception as e:  # noqa: BLE001 - every failure is reported by the test
            errors[i] = e

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(one, i) for i in range(CLIENTS)]
        start.wait()
        if during is not None:
            during()
        for f in futures:
            f.result()
    return results, errors


def compiles(replicas: list[Replica]) -> float:
    return sum(r.metric("lcc_compiles_total") for r in replicas if r.alive)


def assert_one_object_per_program(results: dict[int, str], n: int) -> None:
    by_program: dict[int, set[str]] = {}
    for i, digest in results.items():
        by_program.setdefault(i % n, set()).add(digest)
    assert len(by_program) == n
    assert all(len(d) == 1 for d in by_program.values()), by_program
    assert len({next(iter(d)) for d in by_program.values()}) == n  # distinct programs


def test_each_program_is_compiled_once_fleet_wide(fleet):
    replicas, proxy = fleet
    before = compiles(replicas)
    results, errors = burst(proxy.url, replicas, programs("once"))

    assert not errors, {i: str(e) for i, e in errors.items()}
    assert_one_object_per_program(results, PROGRAMS)
    assert compiles(replicas) - before == PROGRAMS
    # haproxy spread the clients: more than one replica served compiles
    served = [float(row["stot"]) for name, row in proxy.stats().items()
              if name.startswith("replica")]
    assert sum(1 for s in served if s > 0) > 1, served


def test_client_fails_over_from_a_killed_replica_without_haproxy(fleet):
    replicas, _ = fleet
    victim = replicas[0]
    victim.kill()
    try:
        url = ",".join(r.url for r in replicas)  # the dead one first
        results, errors = burst(url, replicas, programs("client"))
    finally:
        victim.start()

    assert not errors, {i: str(e) for i, e in errors.items()}
    assert_one_object_per_program(results, PROGRAMS)


def test_a_replica_killed_mid_burst_costs_no_request(fleet):
    replicas, proxy = fleet
    victim = replicas[1]
    name = "replica2"
    killed = threading.Event()

    def kill_while_it_serves() -> None:
        # SIGKILL once haproxy has a request in flight at the victim
        for _ in range(2000):
            if int(proxy.stats()[name]["scur"] or 0) > 0:
                victim.kill()
                killed.set()
                return
            threading.Event().wait(0.005)

    results, errors = burst(proxy.url, replicas, programs("kill"), during=kill_while_it_serves)

    retried = {n: (r["status"], r["wretr"], r["wredis"]) for n, r in proxy.stats().items()}
    assert killed.is_set(), "the victim never had a request in flight"
    assert not victim.alive
    failed = [line for line in proxy.log.read_text(errors="replace").splitlines()
              if " 502 " in line or " 503 " in line or " 504 " in line]
    assert not errors, ({i: str(e) for i, e in errors.items()}, retried, failed)
    assert_one_object_per_program(results, PROGRAMS)
