"""The service's artifact store: content addressing, corruption, and the disk
budget that keeps a stream of unique requests from filling the disk."""

from __future__ import annotations

import hashlib
import os

from lcc_server.artifacts import Artifact, ArtifactStore


def art(n: int, size: int = 1000) -> Artifact:
    data = bytes([n % 256]) * size
    return Artifact(digest=hashlib.sha256(data).hexdigest(), object=data)


def key(n: int) -> str:
    return hashlib.sha256(f"request {n}".encode()).hexdigest()


def on_disk(store: ArtifactStore) -> set[str]:
    return {p.stem for p in (store.root / "objects").glob("*.o")}


def test_store_and_read_back(tmp_path):
    store = ArtifactStore(tmp_path)
    a = art(1)

    store.put(a)
    store.remember(key(1), a.digest)

    assert ArtifactStore(tmp_path).lookup(key(1)).object == a.object


def test_corrupt_object_is_dropped(tmp_path):
    a = art(1)
    ArtifactStore(tmp_path).put(a)
    (tmp_path / "objects" / f"{a.digest}.o").write_bytes(b"tampered")

    assert ArtifactStore(tmp_path).get(a.digest) is None
    assert not (tmp_path / "objects" / f"{a.digest}.o").exists()


def test_least_recently_used_entries_are_evicted_beyond_the_budget(tmp_path):
    store = ArtifactStore(tmp_path, disk_bytes=3600)  # room for three entries (object, record, key, BTF)
    arts = [art(n) for n in range(5)]
    for n, a in enumerate(arts[:3]):
        store.put(a)
        store.remember(key(n), a.digest)
        store.put_btf(a.digest, "b" * 64, b"btf")
    assert store.get(arts[0].digest) is not None  # 0 is now more recent than 1 and 2

    store.put(arts[3])
    store.put(arts[4])

    assert on_disk(store) == {arts[0].digest, arts[3].digest, arts[4].digest}
    assert store.evicted == 2
    assert store.disk_usage() <= 3600
    # everything of an evicted entry goes: object, metadata, tailored BTF, request keys
    assert store.get(arts[1].digest) is None
    assert store.lookup(key(1)) is None
    assert not (tmp_path / "keys" / key(1)).exists()
    assert not list((tmp_path / "btf").glob(f"{arts[1].digest}-*"))
    assert not (tmp_path / "objects" / f"{arts[1].digest}.json").exists()
    # what stayed is intact
    assert store.lookup(key(0)).object == arts[0].object
    assert store.get_btf(arts[0].digest, "b" * 64) == b"btf"


def test_an_entry_larger_than_the_budget_is_still_served(tmp_path):
    store = ArtifactStore(tmp_path, disk_bytes=500)
    small, big = art(1, 100), art(2, 5000)

    store.put(small)
    store.put(big)

    assert store.get(big.digest).object == big.object
    assert on_disk(store) == {big.digest}


def test_a_new_process_accounts_for_what_is_on_disk(tmp_path):
    first = ArtifactStore(tmp_path)
    arts = [art(n) for n in range(4)]
    for n, a in enumerate(arts):
        first.put(a)
        first.remember(key(n), a.digest)
        # oldest first, as a long-running server would have left them
        os.utime(tmp_path / "objects" / f"{a.digest}.o", (1000 + n, 1000 + n))
        os.utime(tmp_path / "objects" / f"{a.digest}.json", (1000 + n, 1000 + n))

    second = ArtifactStore(tmp_path, disk_bytes=3500)
    assert second.disk_usage() > 4000
    second.put(art(9))

    assert on_disk(second) == {arts[2].digest, arts[3].digest, art(9).digest}
    assert not (tmp_path / "keys" / key(0)).exists()
    assert second.lookup(key(3)).object == arts[3].object


def test_reading_an_entry_keeps_it(tmp_path):
    store = ArtifactStore(tmp_path, disk_bytes=2500)
    a, b, c = art(1), art(2), art(3)
    store.put(a)
    store.put(b)

    for _ in range(3):
        assert store.get(a.digest) is not None
    store.put(c)

    assert on_disk(store) == {a.digest, c.digest}


def test_storing_the_same_object_again_counts_it_once(tmp_path):
    store = ArtifactStore(tmp_path)
    a = art(1)
    store.put(a)
    store.put_btf(a.digest, "b" * 64, b"x" * 500)
    once = store.disk_usage()

    store.put(a)

    assert store.disk_usage() == once
    assert once >= len(a.object) + 500


def test_request_key_files_count_once(tmp_path):
    store = ArtifactStore(tmp_path)
    a = art(1)
    store.put(a)
    before = store.disk_usage()
    store.remember(key(1), a.digest)
    store.remember(key(1), a.digest)  # the same key again: counted once

    assert store.disk_usage() == before + (tmp_path / "keys" / key(1)).stat().st_size


def test_derived_sets_share_the_budget_and_a_pinned_one_stays(tmp_path):
    store = ArtifactStore(tmp_path, disk_bytes=3000)
    gone: list[str] = []
    store.evict_derived = gone.append
    store.put_derived("kernel:" + "a" * 64, 1500)
    with store.pinned("kernel:" + "a" * 64):
        store.put_derived("kernel:" + "b" * 64, 1400)
        store.put(art(1))  # over the budget: b goes, a is pinned though older
    assert gone == ["kernel:" + "b" * 64]
    assert store.derived_usage() == 1500
    # objects only: the derived sets are reported apart
    assert store.disk_usage() == sum(p.stat().st_size for p in (tmp_path / "objects").iterdir())

    store.put(art(2))  # unpinned now: a, the least recently used, goes
    assert gone[-1] == "kernel:" + "a" * 64
    assert store.derived_usage() == 0
