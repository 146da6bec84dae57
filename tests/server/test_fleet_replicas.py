"""Compile-service replicas (separate processes, separate state directories)
sharing one real redis-server, or a real 3-node Redis Cluster, all started on
loopback ports by the fixtures (tests/fleettools.py).

Checked: a burst of identical requests spread over the replicas compiles
each program exactly once fleet-wide (``lcc_compiles_total`` summed over the
replicas), and every reply is signed by the fleet's one key; a BTF pushed
through one replica is used by a compile on another; a replica killed with
SIGKILL while it holds leases costs no client request (clients fail over)
and its leases are taken over; Redis restarted during a run causes no 5xx,
shows in /healthz and metrics, and the replicas use it again afterwards.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fleettools import Replica, redis_cluster, redis_server, start_replica
from lcc_server.signing import PublicKey
from servertools import HELLO

httpx = pytest.importorskip("httpx")
redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.server, pytest.mark.fleet, pytest.mark.toolchain]

HOST_BTF = Path("/sys/kernel/btf/vmlinux")
ARCH = os.uname().machine
# Short leases and retries, so a dead holder is taken over (and Redis found
# again) within seconds; long enough that a holder starved by a loaded
# machine still renews in time (renewals every 750 ms).
FLEET_ENV = {"LCC_LEASE_MS": "3000", "LCC_STORE_RETRY_SECONDS": "1"}


def program(salt: str, i: int) -> str:
    """The i-th of a set of distinct tiny programs (``salt`` makes the set new)."""
    return f"// fleet test {salt} program {i}\n" + HELLO


def compile_on(replicas: list[Replica], first: int, source: str, **extra) -> httpx.Response:
    """POST /v1/compile to ``replicas[first]``, failing over to the next replica
    when one cannot be reached (as a client with several service URLs does)."""
    body = {"bundle": {"main": "fleet.bpf.c", "files": {"fleet.bpf.c": source}}, **extra}
    error = None
    for step in range(len(replicas)):
        rep = replicas[(first + step) % len(replicas)]
        try:
            return httpx.post(rep.url + "/v1/compile", json=body, headers=rep.headers,
                              timeout=180)
        except httpx.TransportError as exc:  # refused, reset: that replica is gone
            error = exc
    raise AssertionError(f"no replica answered: {error}")


def fleet_sum(replicas: list[Replica], name: str, **labels: str) -> float:
    return sum(r.metric(name, **labels) for r in replicas)


def assert_signed_by_the_fleet(replies: list[httpx.Response], replicas: list[Replica]) -> None:
    keys = {r.public_key for r in replicas}
    assert len(keys) == 1, "replicas of one fleet sign with different keys"
    key = PublicKey.from_line(keys.pop())
    for reply in replies:
        body = reply.json()
        assert body["key_id"] == key.fingerprint
        assert key.verify(body["manifest"].encode(), base64.b64decode(body["signature"]))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A redis-server and three replicas on it; yields (server, replicas)."""
    with redis_server() as server:
        replicas = []
        try:
            for i in range(3):
                replicas.append(start_replica(tmp_path_factory.mktemp(f"replica{i}"),
                                              store=server.url, env=FLEET_ENV))
            yield server, replicas
        finally:
            for rep in replicas:
                rep.stop()


def test_burst_compiles_each_program_once_fleet_wide(fleet):
    _, replicas = fleet
    salt = os.urandom(4).hex()
    sources = [program(salt, i) for i in range(16)]
    compiles = fleet_sum(replicas, "lcc_compiles_total")
    from_store = fleet_sum(replicas, "lcc_cache_hits_total", tier="store")
    notices = fleet_sum(replicas, "lcc_fleet_notices_total")

    # client c asks replica c % 3 for program c % 16: every program reaches all three
    with ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(lambda c: (c % 16, compile_on(replicas, c % 3,
                                                              sources[c % 16])), range(64)))

    assert [r.status_code for _, r in replies] == [200] * 64, replies[0][1].text
    digests = {}
    for prog, reply in replies:
        digests.setdefault(prog, set()).add(reply.json()["digest"])
    assert all(len(d) == 1 for d in digests.values()) and len(digests) == 16
    assert fleet_sum(replicas, "lcc_compiles_total") - compiles == 16
    # the two replicas that did not compile a program read it from Redis
    assert fleet_sum(replicas, "lcc_cache_hits_total", tier="store") - from_store >= 32
    # waiting replicas were woken by the holders' notices (pub/sub), not only by polling
    assert fleet_sum(replicas, "lcc_fleet_notices_total") > notices
    assert_signed_by_the_fleet([r for _, r in replies], replicas)


def test_btf_pushed_through_one_replica_is_used_by_another(fleet):
    _, (one, two, three) = fleet
    release = f"6.0.0-fleet-{os.urandom(4).hex()}"
    put = httpx.put(f"{one.url}/v1/btf/{ARCH}/{release}", content=HOST_BTF.read_bytes(),
                    headers=one.headers, timeout=120)
    assert put.status_code == 201, put.text

    reply = compile_on([two], 0, program(release, 0), kernel=release)
    assert reply.status_code == 200, reply.text
    assert '"kernel":"' + release + '"' in reply.json()["manifest"]
    listed = httpx.get(f"{three.url}/v1/btf", headers=three.headers).json()["btf"]
    assert [(e["release"], e["owner"], e["source"]) for e in listed
            if e["release"] == release] == [(release, "default", "upload")]
    hosts = [e for e in listed if e["source"] == "host"]
    assert hosts and all(e["owner"] == "host" for e in hosts)


def test_redis_restart_during_a_run_costs_no_request(fleet):
    server, replicas = fleet
    salt = os.urandom(4).hex()
    replies: list[httpx.Response] = []
    stop = threading.Event()

    def client(n: int) -> None:  # keeps asking while Redis goes away and comes back
        i = n
        while not stop.is_set():
            replies.append(compile_on(replicas, i % 3, program(salt, i % 6)))
            i += 1

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(client, n) for n in range(3)]
        try:
            server.stop()
            for rep in replicas:
                assert rep.healthz()["store"] == {"kind": "redis", "ok": False,
                                                  "degraded": True}
                assert rep.metric("lcc_store_degraded") == 1
            in_outage = len(replies)
            deadline = time.monotonic() + 60
            while len(replies) < in_outage + 6 and time.monotonic() < deadline:
                time.sleep(0.1)  # compiles and hits served while Redis is down
            assert fleet_sum(replicas, "lcc_store_errors_total") >= 3
        finally:
            server.start()
        deadline = time.monotonic() + 30
        while not all(rep.healthz()["store"]["ok"] for rep in replicas):
            assert time.monotonic() < deadline, "the replicas did not find Redis again"
            time.sleep(0.2)
        stop.set()
        for f in running:
            f.result()

    assert len(replies) >= 6
    assert [r.status_code for r in replies] == [200] * len(replies), \
        [r.text for r in replies if r.status_code != 200][:1]
    assert all(rep.metric("lcc_store_degraded") == 0 for rep in replicas)
    compiles = fleet_sum(replicas, "lcc_compiles_total")
    after = [compile_on(replicas, i % 3, program(salt, 10)) for i in range(3)]
    assert [r.status_code for r in after] == [200] * 3
    assert fleet_sum(replicas, "lcc_compiles_total") - compiles == 1  # shared again
    # Redis came back empty; each replica registered its kernel again
    assert server.cli("EXISTS", f"lcc:btf:{{{ARCH}/{os.uname().release}}}:meta").strip() == "1"


def test_replica_killed_while_holding_leases(fleet, tmp_path):
    server, (one, two, _) = fleet
    # one compile slot: the victim holds leases for compiles it has not started
    victim = start_replica(tmp_path / "victim", store=server.url,
                           env={**FLEET_ENV, "LCC_MAX_CONCURRENCY": "1"})
    everyone = [victim, one, two]
    prefix = f"{os.uname().nodename}:{victim.proc.pid}:".encode()
    c = redis.Redis.from_url(server.url)

    def victim_leases() -> list[bytes]:
        return [k for k in c.scan_iter("lcc:lease:*") if (c.get(k) or b"").startswith(prefix)]

    takeovers = fleet_sum([one, two], "lcc_lease_takeovers_total")
    salt = os.urandom(4).hex()
    sources = [program(salt, i) for i in range(16)]
    held: list[bytes] = []
    with ThreadPoolExecutor(48) as pool:
        # the victim is asked first, for every program, and dies holding leases;
        # its clients fail over to the others
        first = [pool.submit(compile_on, everyone, 0, src) for src in sources]
        deadline = time.monotonic() + 60
        while len(held) < 2 and time.monotonic() < deadline:
            held = victim_leases()
            time.sleep(0.005)
        victim.kill()
        rest = [pool.submit(compile_on, everyone, 1 + c % 2, sources[c % 16])
                for c in range(32)]
        replies = [f.result() for f in first + rest]

    assert len(held) >= 2, "the victim never held two leases at once"
    assert not victim.alive
    assert [r.status_code for r in replies] == [200] * 48
    assert fleet_sum([one, two], "lcc_lease_takeovers_total") - takeovers >= 1
    assert_signed_by_the_fleet(replies, [one, two])
    digests = {}
    for i, reply in enumerate(replies):
        digests.setdefault(i % 16, set()).add(reply.json()["digest"])
    assert all(len(d) == 1 for d in digests.values())


def test_replicas_on_a_redis_cluster(tmp_path):
    with redis_cluster(3) as cluster:
        replicas = [start_replica(tmp_path / f"c{i}", store=cluster.url, env=FLEET_ENV)
                    for i in range(2)]
        try:
            salt = os.urandom(4).hex()
            with ThreadPoolExecutor(8) as pool:
                replies = list(pool.map(
                    lambda c: compile_on(replicas, c % 2, program(salt, c % 2)), range(8)))
            assert [r.status_code for r in replies] == [200] * 8
            assert fleet_sum(replicas, "lcc_compiles_total") == 2
            assert all(r.healthz()["store"] == {"kind": "redis", "ok": True, "degraded": False}
                       for r in replicas)

            release = f"6.0.0-cluster-{salt}"
            put = httpx.put(f"{replicas[0].url}/v1/btf/{ARCH}/{release}",
                            content=HOST_BTF.read_bytes(), headers=replicas[0].headers,
                            timeout=120)
            assert put.status_code == 201, put.text
            reply = compile_on(replicas, 1, program(salt, 5), kernel=release)
            assert reply.status_code == 200, reply.text
        finally:
            for rep in replicas:
                rep.stop()
