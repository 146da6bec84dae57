"""The service's stores against a real redis-server and a real 3-node Redis
Cluster, both started on loopback ports by the fixtures (tests/fleettools.py).

What is checked: artifacts round-trip in chunks and are verified on read
(digest, seal of the fleet's key); artifact keys carry a TTL and BTF keys
none (so ``volatile-lru`` evicts only artifacts); a lease is exclusive,
renewed while held, released by its holder only, and expires when its holder
stops renewing; a dead Redis turns into ``StoreUnavailable`` and degraded mode,
and an answering one ends it; the same operations work through Redis Cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fleettools import redis_cluster, redis_server
from lcc_server.artifacts import Artifact, ArtifactStore as DiskArtifactStore
from lcc_server.btf_store import (BtfConflict, BtfForbidden, BtfQuotaExceeded,
                                  BtfStore as DiskBtfStore)
from lcc_server.metrics import Metrics
from lcc_server.settings import Settings
from lcc_server.signing import KeyRing
from lcc_server.stores import StoreUnavailable, open_stores
from lcc_server.stores.base import ArtifactStore, BtfStore
from lcc_server.stores.lease import Leases
from lcc_server.stores.link import RedisLink
from lcc_server.stores.notices import Notices
from lcc_server.stores.redis_artifacts import CHUNK, FleetArtifactStore, RedisArtifacts
from lcc_server.stores.redis_btf import FleetBtfStore
from lcc_server.tokens import Caller

pytestmark = [pytest.mark.server, pytest.mark.fleet]

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def cluster_url():
    with redis_cluster(3) as cluster:
        yield cluster.url


def artifact(size: int, seed: bytes = b"") -> Artifact:
    data = (hashlib.sha256(seed).digest() * (size // 32 + 1))[:size]
    return Artifact(digest=hashlib.sha256(data).hexdigest(), object=data,
                    toolchain={"clang": "test"}, programs=[{"name": "p"}], maps=[])


def fresh_key() -> str:
    return os.urandom(32).hex()


# -- settings -----------------------------------------------------------------------------

def test_store_setting_accepts_disk_redis_and_cluster_urls():
    assert Settings.from_env({}).store == "disk"
    assert Settings.from_env({"LCC_STORE": "redis://h:6379/0"}).store == "redis://h:6379/0"
    url = "redis+cluster://a:7000,b:7001"
    assert Settings.from_env({"LCC_STORE": url}).store == url
    assert Settings.from_env({"LCC_STORE": url}).to_env()["LCC_STORE"] == url
    for bad in ("memcached://h", "redis://", "s3"):
        with pytest.raises(ValueError, match="LCC_STORE"):
            Settings.from_env({"LCC_STORE": bad})


def test_lcc_server_refuses_an_unknown_store():
    out = subprocess.run([sys.executable, "-m", "lcc.cli", "server", "--store", "memcached://h"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "bad --store" in out.stderr and "redis://" in out.stderr


def test_disk_settings_give_the_disk_stores(tmp_path):
    stores = open_stores(Settings(state_dir=tmp_path))
    assert isinstance(stores.artifacts, DiskArtifactStore)
    assert isinstance(stores.btf, DiskBtfStore)
    assert isinstance(stores.artifacts, ArtifactStore) and isinstance(stores.btf, BtfStore)
    assert stores.leases is None and stores.status().to_dict() == {
        "kind": "disk", "ok": True, "degraded": False}


# -- artifacts ----------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_artifacts_round_trip_in_chunks_with_ttl(where, redis_url, cluster_url):
    url = redis_url if where == "redis" else cluster_url
    keys = KeyRing.generate()
    link = RedisLink(url)
    shared = RedisArtifacts(link, keys=keys, ttl=3600)
    art = artifact(2 * CHUNK + 123, seed=where.encode() + os.urandom(8))
    key = fresh_key()
    shared.put(art)
    shared.remember(key, art.digest)

    got = RedisArtifacts(RedisLink(url), keys=keys, ttl=3600).lookup(key)
    assert got is not None and got.object == art.object and got.programs == art.programs
    chunks = [f"lcc:a:{{{art.digest}}}:{i}" for i in range(3)]
    c = link.client
    assert all(c.exists(k) for k in chunks) and not c.exists(f"lcc:a:{{{art.digest}}}:3")
    for k in [*chunks, f"lcc:a:{{{art.digest}}}:meta", f"lcc:k:{key}"]:
        assert 0 < c.pttl(k) <= 3600_000, k


def test_artifacts_are_verified_on_read(redis_url):
    keys = KeyRing.generate()
    link = RedisLink(redis_url)
    shared = RedisArtifacts(link, keys=keys, ttl=60)
    art = artifact(5000, seed=os.urandom(8))
    shared.put(art)

    # another fleet's key (not shared): its records are not trusted
    assert RedisArtifacts(link, keys=KeyRing.generate(), ttl=60).get(art.digest) is None
    assert shared.get(art.digest) is not None
    # a flipped byte in the object
    link.client.setrange(f"lcc:a:{{{art.digest}}}:0", 10, b"\xff")
    assert shared.get(art.digest) is None
    # a chunk evicted under the record
    other = artifact(3000, seed=os.urandom(8))
    shared.put(other)
    link.client.delete(f"lcc:a:{{{other.digest}}}:0")
    assert shared.get(other.digest) is None
    # a request key pointed at another object
    key = fresh_key()
    shared.remember(key, other.digest)
    link.client.set(f"lcc:k:{key}", link.client.get(f"lcc:k:{key}").replace(
        other.digest.encode(), art.digest.encode()))
    assert shared.digest_of(key) is None


def test_fleet_artifacts_read_through_to_the_local_disk(tmp_path, redis_url):
    keys = KeyRing.generate()
    one = FleetArtifactStore(DiskArtifactStore(tmp_path / "a", keys=keys),
                             RedisArtifacts(RedisLink(redis_url), keys=keys, ttl=60))
    two_local = DiskArtifactStore(tmp_path / "b", keys=keys)
    two = FleetArtifactStore(two_local, RedisArtifacts(RedisLink(redis_url), keys=keys, ttl=60))
    art, key = artifact(4000, seed=os.urandom(8)), fresh_key()
    one.put(art)
    one.remember(key, art.digest)

    assert two_local.lookup(key) is None
    hit = two.find(key)
    assert hit is not None and hit.tier == "store" and hit.artifact.object == art.object
    assert two_local.lookup(key).object == art.object  # kept on this replica's disk
    assert two.find(key).tier == "memory"


def test_tailored_btf_is_shared_sealed_and_verified(tmp_path, redis_url):
    keys = KeyRing.generate()
    one = FleetArtifactStore(DiskArtifactStore(tmp_path / "a", keys=keys),
                             RedisArtifacts(RedisLink(redis_url), keys=keys, ttl=60))
    two_local = DiskArtifactStore(tmp_path / "b", keys=keys)
    two = FleetArtifactStore(two_local, RedisArtifacts(RedisLink(redis_url), keys=keys, ttl=60))
    art, kernel = artifact(4000, seed=os.urandom(8)), fresh_key()
    tailored = os.urandom(700)
    one.put(art)
    one.put_btf(art.digest, kernel, tailored)

    assert two.get(art.digest) is not None  # the object, now on this replica's disk
    assert two_local.get_btf(art.digest, kernel) is None
    assert two.get_btf(art.digest, kernel) == tailored
    assert two_local.get_btf(art.digest, kernel) == tailored  # kept beside its object
    c = one.shared.link.client
    name = f"lcc:a:{{{art.digest}}}:btf:{kernel}"
    assert 0 < c.pttl(name) <= 60_000  # evicted with artifacts, not kept like kernels
    # another fleet's key, or a flipped byte: not served
    other = RedisArtifacts(RedisLink(redis_url), keys=KeyRing.generate(), ttl=60)
    assert other.get_btf(art.digest, kernel) is None
    c.setrange(name, len(c.get(name)) - 1, b"\x00" if tailored[-1] else b"\x01")
    assert one.shared.get_btf(art.digest, kernel) is None


# -- BTF ----------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_btf_is_shared_never_expires_and_keeps_its_owner(where, tmp_path, redis_url,
                                                         cluster_url):
    url = redis_url if where == "redis" else cluster_url
    data = HOST_BTF.read_bytes()
    release = f"6.0.{os.getpid()}-{where}-{os.urandom(3).hex()}"

    def replica(name: str) -> FleetBtfStore:
        return FleetBtfStore(DiskBtfStore(tmp_path / name, host_btf=tmp_path / "none"),
                             RedisLink(url))
    one, two = replica("one"), replica("two")
    entry, created = one.put("x86_64", release, data, caller=Caller("alice"))
    assert created and entry.owner == "alice"

    found = two.find("x86_64", release)
    sha = hashlib.sha256(data).hexdigest()
    assert found is not None and found.owner == "alice" and found.sha256 == sha
    assert two.local.find("x86_64", release) is None  # found, not yet copied here
    path = two.materialise("x86_64", release)
    assert path.is_relative_to(tmp_path / "two") and path.read_bytes() == data
    assert two.read("x86_64", release) == data
    listed = [e for e in replica("three").entries() if e.release == release]
    assert [(e.owner, e.sha256, e.size) for e in listed] == [("alice", sha, len(data))]
    c = two.link.client
    assert c.pttl(f"lcc:btf:{{x86_64/{release}}}:meta") == -1  # no TTL: never evicted
    assert c.pttl(f"lcc:btf:{{x86_64/{release}}}:{sha}:0") == -1

    # a copy damaged on this replica's disk is fetched again, checked
    path.write_bytes(_flipped(data))
    assert two.materialise("x86_64", release).read_bytes() == data

    other = _flipped(data)
    with pytest.raises(BtfConflict):
        two.put("x86_64", release, other)
    with pytest.raises(BtfForbidden):
        two.put("x86_64", release, other, replace=True, caller=Caller("bob"))
    assert two.put("x86_64", release, data, caller=Caller("bob"))[1] is False


def test_each_replica_registers_its_own_kernel(tmp_path, redis_url):
    link = RedisLink(redis_url)
    release = f"6.1.{os.getpid()}-host-{os.urandom(3).hex()}"
    host = FleetBtfStore(DiskBtfStore(tmp_path / "h", host_btf=HOST_BTF,
                                      host_arch="x86_64", host_release=release), link)
    host.register_host()
    other = FleetBtfStore(DiskBtfStore(tmp_path / "o", host_btf=tmp_path / "none"), link)
    entry = other.find("x86_64", release)
    assert entry is not None and entry.owner == "host" and entry.source == "host"
    assert other.materialise("x86_64", release).read_bytes() == HOST_BTF.read_bytes()
    assert [e.source for e in other.entries() if e.release == release] == ["host"]
    with pytest.raises(BtfConflict, match="kernel of a replica"):
        other.put("x86_64", release, _flipped(HOST_BTF.read_bytes()), replace=True)


def test_uploaded_releases_are_capped_fleet_wide(tmp_path, redis_url):
    with redis_server() as server:  # its own Redis: the count is the fleet's
        link = RedisLink(server.url)
        one = FleetBtfStore(DiskBtfStore(tmp_path / "one", host_btf=tmp_path / "none",
                                         max_releases=2), link)
        two = FleetBtfStore(DiskBtfStore(tmp_path / "two", host_btf=tmp_path / "none",
                                         max_releases=2), RedisLink(server.url))
        data = HOST_BTF.read_bytes()
        one.put("x86_64", "6.0-a", data)
        two.put("x86_64", "6.0-b", data)
        with pytest.raises(BtfQuotaExceeded):
            one.put("x86_64", "6.0-c", data)
        assert two.upload_count() == 2
        two.remove("x86_64", "6.0-b")
        assert one.put("x86_64", "6.0-c", data)[1] is True

        # an upload that never finished (its replica died after counting it) holds
        # its place for a while, then gives it up to a new release
        two.remove("x86_64", "6.0-c")
        c, now = link.client, int(time.time() * 1000)
        c.zadd("lcc:btf:uploaded", {"x86_64/6.0-dead": now})
        with pytest.raises(BtfQuotaExceeded):
            one.put("x86_64", "6.0-d", data)
        c.zadd("lcc:btf:uploaded", {"x86_64/6.0-dead": now - 120_000})
        assert one.put("x86_64", "6.0-d", data)[1] is True
        assert two.upload_count() == 2


def test_an_unpushed_upload_is_set_aside_not_overwritten_by_the_fleets(tmp_path, redis_url):
    data, other = HOST_BTF.read_bytes(), _flipped(HOST_BTF.read_bytes())
    release = f"6.3.{os.urandom(3).hex()}-late"
    local = DiskBtfStore(tmp_path / "a", host_btf=tmp_path / "none")
    local.put("x86_64", release, data, unsynced=True)  # by a process that saw Redis down
    FleetBtfStore(DiskBtfStore(tmp_path / "b", host_btf=tmp_path / "none"),
                  RedisLink(redis_url)).put("x86_64", release, other)

    # another process on that state directory, whose Redis never failed, compiles for it
    path = FleetBtfStore(local, RedisLink(redis_url)).materialise("x86_64", release)
    assert path.read_bytes() == other
    aside = list((tmp_path / "a" / ".set-aside" / "x86_64").glob(f"{release}-*.btf"))
    assert [p.read_bytes() for p in aside] == [data]


def test_uploads_kept_while_redis_was_down_are_pushed_at_start(tmp_path, redis_url):
    metrics = Metrics()
    data, other = HOST_BTF.read_bytes(), _flipped(HOST_BTF.read_bytes())
    salt = os.urandom(3).hex()
    alone, contested = f"6.2.{salt}-alone", f"6.2.{salt}-contested"
    local = DiskBtfStore(tmp_path / "a", host_btf=tmp_path / "none")
    local.put("x86_64", alone, data, caller=Caller("alice"), unsynced=True)
    local.put("x86_64", contested, data, unsynced=True)
    elsewhere = FleetBtfStore(DiskBtfStore(tmp_path / "b", host_btf=tmp_path / "none"),
                              RedisLink(redis_url))
    elsewhere.put("x86_64", contested, other, caller=Caller("bob"))

    FleetBtfStore(local, RedisLink(redis_url, metrics=metrics)).register_host()
    assert local.unsynced() == []
    entry = elsewhere.find("x86_64", alone)
    assert entry is not None and entry.owner == "alice"
    assert elsewhere.read("x86_64", alone) == data
    assert elsewhere.read("x86_64", contested) == other  # the fleet's stays
    assert local.find("x86_64", contested) is None  # set aside, not served...
    aside = list((tmp_path / "a" / ".set-aside" / "x86_64").glob(f"{contested}-*.btf"))
    assert [p.read_bytes() for p in aside] == [data]  # ...and not lost
    for result in ("pushed", "conflict"):
        assert metrics.registry.get_sample_value("lcc_btf_synced_total",
                                                 {"result": result}) == 1


# -- leases -------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_lease_is_exclusive_renewed_and_expires_without_its_holder(where, redis_url,
                                                                  cluster_url):
    url = redis_url if where == "redis" else cluster_url
    a = Leases(RedisLink(url), ttl_ms=600, holder="a")
    b = Leases(RedisLink(url), ttl_ms=600, holder="b")
    key = fresh_key()
    lease = a.acquire(key)
    assert lease is not None and b.acquire(key) is None
    time.sleep(1.5)  # > 2 TTLs: only renewal keeps it
    assert b.acquire(key) is None and b.holder_of(key).startswith("a:")
    assert lease.took_over is None
    lease.release()
    assert b.holder_of(key) is None

    taken = b.acquire(key)
    assert taken.took_over is None  # released, not abandoned
    taken._stop.set()  # its holder "dies": no more renewals
    assert a.acquire(key) is None
    deadline = time.monotonic() + 10
    while (again := a.acquire(key)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again is not None and again.took_over == taken.token  # expired, taken over
    taken.release()  # a stale holder cannot delete the new holder's lease
    assert a.holder_of(key).startswith("a:")
    again.release()
    final = b.acquire(key)
    assert final.took_over is None
    final.release()


@pytest.mark.parametrize("where", ["redis", "cluster"])
def test_releasing_a_lease_wakes_the_replicas_waiting_for_it(where, redis_url, cluster_url):
    url = redis_url if where == "redis" else cluster_url
    notices = Notices(RedisLink(url, retry_seconds=0.2))
    notices.start()
    try:
        deadline = time.monotonic() + 20
        while not notices.listening and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notices.listening
        holder = Leases(RedisLink(url), ttl_ms=5000, holder="h")
        key, other = fresh_key(), fresh_key()

        async def scenario() -> tuple[bool, bool]:
            waiting = asyncio.ensure_future(notices.wait(key, 60))
            await asyncio.sleep(0)  # it listens for key from here on
            holder.acquire(other).release()  # another key's notice does not wake it
            await asyncio.sleep(0.3)
            early = waiting.done()
            holder.acquire(key).release()
            return early, await waiting
        assert asyncio.run(scenario()) == (False, True)
    finally:
        notices.close()


# -- degraded mode ------------------------------------------------------------------------

def test_unreachable_redis_degrades_then_recovers(tmp_path):
    metrics = Metrics()
    keys = KeyRing.generate()
    with redis_server() as server:
        link = RedisLink(server.url, retry_seconds=0.2, metrics=metrics)
        store = FleetArtifactStore(DiskArtifactStore(tmp_path, keys=keys),
                                   RedisArtifacts(link, keys=keys, ttl=60))
        server.stop()
        art, key = artifact(1000, seed=os.urandom(8)), fresh_key()
        store.put(art)  # kept locally, no exception
        store.remember(key, art.digest)
        assert store.find(key).artifact.object == art.object
        assert link.degraded and link.status().to_dict() == {
            "kind": "redis", "ok": False, "degraded": True}
        assert _sample(metrics, "lcc_store_degraded") == 1
        assert _sample(metrics, "lcc_store_errors_total") >= 1
        with pytest.raises(StoreUnavailable):
            Leases(link, ttl_ms=1000).acquire(key)

        server.start()
        time.sleep(0.3)  # past retry_seconds
        assert link.status().ok and not link.degraded
        assert _sample(metrics, "lcc_store_degraded") == 0
        store.put(art)
        assert RedisArtifacts(link, keys=keys, ttl=60).get(art.digest) is not None


def _sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def _flipped(data: bytes) -> bytes:
    """``data`` with its last byte changed: different BTF with a valid header."""
    return data[:-1] + bytes([data[-1] ^ 1])
