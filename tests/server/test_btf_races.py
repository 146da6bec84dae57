"""BTF uploads racing across processes, against real services.

Two services (separate processes) share one store: one state directory with
the disk store (what ``--workers N`` does), or one real redis-server started
by the test.  Uploads sent at once (threads released by a barrier) must be
settled by the store: two first uploads of different BTF for one kernel give
one 201 and one 409 and the stored BTF is the 201's; uploads of new releases
never pass ``LCC_MAX_BTF_RELEASES`` together.  Then: uploads made while Redis
is down reach the fleet when it is back, and one that a different upload
for the same kernel beat meanwhile is set aside and reported, not pushed
over it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from fleettools import Replica, redis_server, start_replica, tiny_btf

httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.server, pytest.mark.fleet]

ARCH = os.uname().machine
CAP = 12
ENV = {"LCC_MAX_BTF_RELEASES": str(CAP), "LCC_STORE_RETRY_SECONDS": "1",
       "LCC_WARM": "0"}


@pytest.fixture(scope="module", params=["disk", "redis"])
def pair(request, tmp_path_factory):
    """Two services on one store: one state directory, or one Redis."""
    with redis_server() as server:
        store = server if request.param == "redis" else None
        state = tmp_path_factory.mktemp("shared")
        replicas: list[Replica] = []
        try:
            for i in range(2):
                where = state if store is None else tmp_path_factory.mktemp(f"replica{i}")
                replicas.append(start_replica(where, store=store, env=ENV))
            yield replicas
        finally:
            for rep in replicas:
                rep.stop()


def put(rep: Replica, release: str, data: bytes) -> httpx.Response:
    return httpx.put(f"{rep.url}/v1/btf/{ARCH}/{release}", content=data,
                     headers=rep.headers, timeout=60)


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``calls`` in threads released together; their replies in order."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - reported below
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reply in out:
        if isinstance(reply, Exception):
            raise reply
    return out


def uploads(rep: Replica) -> list[dict]:
    listed = httpx.get(f"{rep.url}/v1/btf", headers=rep.headers, timeout=30).json()["btf"]
    return [e for e in listed if e["source"] == "upload"]


def test_first_uploads_of_one_kernel_give_one_201_and_one_409(pair):
    one, two = pair
    salt = os.urandom(4).hex()
    for r in range(4):
        release = f"6.0.0-race{salt}-{r}"
        mine, theirs = tiny_btf(f"a{salt}{r}"), tiny_btf(f"b{salt}{r}")
        replies = at_once([lambda: put(one, release, mine), lambda: put(two, release, theirs)])
        statuses = [reply.status_code for reply in replies]
        assert sorted(statuses) == [201, 409], [reply.text for reply in replies]
        won = mine if statuses[0] == 201 else theirs
        for rep in pair:  # both serve the winner's BTF
            got = httpx.get(f"{rep.url}/v1/btf/{ARCH}/{release}", headers=rep.headers)
            assert got.status_code == 200 and got.content == won
        assert replies[statuses.index(409)].json()["error"] == "conflict"


def test_concurrent_new_releases_never_pass_the_cap(pair):
    one, two = pair
    salt = os.urandom(4).hex()
    free = CAP - len(uploads(one))
    assert free > 0
    n = free + 4
    calls = [lambda i=i: put(pair[i % 2], f"6.0.0-cap{salt}-{i}", tiny_btf(f"c{salt}{i}"))
             for i in range(n)]
    statuses = sorted(reply.status_code for reply in at_once(calls))
    assert statuses == [201] * free + [409] * 4
    assert len(uploads(one)) == len(uploads(two)) == CAP


def wait_for_store(rep: Replica, timeout: float = 30) -> None:
    """Until ``rep`` says its shared store answers (asking it is what lets it retry)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = rep.healthz()
        if health and health["store"]["ok"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"{rep.url} did not find its store again: {rep.healthz()}")


def test_uploads_made_while_redis_was_down_reach_the_fleet(tmp_path):
    with redis_server() as server:
        a = start_replica(tmp_path / "a", store=server, env=ENV)
        b = start_replica(tmp_path / "b", store=server, env=ENV)
        try:
            salt = os.urandom(4).hex()
            alone, contested = f"6.0.0-down{salt}-1", f"6.0.0-down{salt}-2"
            server.stop()
            assert put(a, alone, tiny_btf(f"x{salt}")).status_code == 201
            assert put(a, contested, tiny_btf(f"y{salt}")).status_code == 201
            assert a.healthz()["store"] == {"kind": "redis", "ok": False, "degraded": True}

            server.start()  # empty: it kept nothing
            wait_for_store(b)
            assert put(b, contested, tiny_btf(f"z{salt}")).status_code == 201  # elsewhere
            wait_for_store(a)  # a finds Redis again and pushes what it kept

            assert b.get(f"/v1/btf/{ARCH}/{alone}") == tiny_btf(f"x{salt}")
            for rep in (a, b):  # the fleet's entry was not overwritten
                assert rep.get(f"/v1/btf/{ARCH}/{contested}") == tiny_btf(f"z{salt}")
            assert a.metric("lcc_btf_synced_total", result="pushed") == 1
            assert a.metric("lcc_btf_synced_total", result="conflict") == 1
            aside = list((tmp_path / "a" / "btf" / ".set-aside" / ARCH).glob(f"{contested}-*"))
            assert [p.read_bytes() for p in aside if p.suffix == ".btf"] == [
                tiny_btf(f"y{salt}")]  # kept, not lost
            listed = {e["release"]: e for e in uploads(b)}
            assert alone in listed and contested in listed
        finally:
            a.stop()
            b.stop()
