"""The artifact cache: round trips, atomic writes, corruption recovery, keys, single flight,
and the signed manifests of a compile service's entries, checked again on every read."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from pathlib import Path

import pytest

from lcc.compile import artifact_key
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache, cache_key, default_dir
from lcc.compile.cache import CachedBackend
from lcc.compile.config import ClientConfig
from lcc.compile.service import ServiceBackend
from lcc.compile.trust import TrustPolicy, read_key_file
from lcc.errors import CacheError, UntrustedArtifact
from lcc_server.signing import KeyRing

from fakeservice import EVIL, FakeService, answer
from fakeservice import OBJ as SERVED

OBJ = b"\x7fELF" + bytes(range(256)) * 4
BTF = b"\x9f\xeb\x01\x00" + b"btf" * 10


@pytest.fixture
def store(tmp_path):
    return ArtifactCache(tmp_path / "cache")


def key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_default_dir_follows_lcc_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path / "x"))
    assert default_dir() == tmp_path / "x"
    assert ArtifactCache().root == tmp_path / "x"
    monkeypatch.delenv("LCC_CACHE_DIR")
    assert default_dir().name == "lcc"
    assert default_dir(ClientConfig(cache_dir=tmp_path / "y")) == tmp_path / "y"


def test_round_trip_with_btf_and_metadata(store):
    k = key_of("a")
    put = store.put(k, OBJ, btf=BTF, meta={"origin": "local", "main": "a.bpf.c"})

    got = store.get(k)

    assert got is not None
    assert (got.object, got.btf, got.digest) == (OBJ, BTF, hashlib.sha256(OBJ).hexdigest())
    assert got.btf_path == put.btf_path and got.btf_path.read_bytes() == BTF
    assert got.meta["origin"] == "local" and got.meta["main"] == "a.bpf.c"
    assert got.size == len(OBJ) + len(BTF)
    assert store.get(key_of("other")) is None


def test_equal_objects_share_one_blob(store):
    store.put(key_of("a"), OBJ)
    store.put(key_of("b"), OBJ)

    blobs = [f for f in files_under(store.base) if f.startswith("blobs/")]
    assert len(blobs) == 1
    assert store.get(key_of("a")).object == store.get(key_of("b")).object == OBJ


def test_failed_write_leaves_no_entry_and_no_temporary_files(store, monkeypatch):
    k = key_of("a")
    real_replace = os.replace
    calls = []

    def replace_then_crash(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(CacheError, match="No space left"):
        store.put(k, OBJ)
    monkeypatch.setattr(os, "replace", real_replace)

    assert store.get(k) is None
    assert not [f for f in files_under(store.base) if f.endswith(".tmp")]


def _writer(root: str, key: str, payload: bytes, rounds: int) -> None:
    store = ArtifactCache(root)
    for _ in range(rounds):
        store.put(key, payload)


def _reader(root: str, key: str, payloads: list[bytes], rounds: int, q) -> None:
    store = ArtifactCache(root)
    seen = set()
    for _ in range(rounds):
        e = store.get(key)
        seen.add(None if e is None else e.object in payloads)
    q.put(seen)


def test_concurrent_writers_and_readers_see_whole_entries(store):
    """Processes rewrite one key with different objects while others read it:
    every read is a miss or one of the objects, never a mix or a damaged entry."""
    k = key_of("contended")
    payloads = [OBJ, OBJ[::-1] * 3]
    store.put(k, payloads[0])  # present from the start: a reader must never miss it
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(store.root), k, p, 60)) for p in payloads]
    procs += [ctx.Process(target=_reader, args=(str(store.root), k, payloads, 200, q))
              for _ in range(2)]
    for p in procs:
        p.start()
    seen = [q.get(timeout=120) for _ in range(2)]
    for p in procs:
        p.join(timeout=120)

    assert all(p.exitcode == 0 for p in procs)
    assert all(s == {True} for s in seen)  # every read found a whole entry, never a torn one
    assert store.get(k).object in payloads


def test_corrupt_object_is_dropped_and_logged(store, caplog):
    k = key_of("a")
    entry = store.put(k, OBJ)
    data = bytearray(entry.object_path.read_bytes())
    data[10] ^= 0xFF
    entry.object_path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="lcc.compile.cache"):
        assert store.get(k) is None

    assert "damaged" in caplog.text and k[:16] in caplog.text
    assert not entry.object_path.exists()
    assert store.entries() == []
    store.put(k, OBJ)  # filled again: a fresh, whole entry
    assert store.get(k).object == OBJ


def test_corrupt_btf_is_dropped(store):
    k = key_of("a")
    entry = store.put(k, OBJ, btf=BTF)
    entry.btf_path.write_bytes(BTF[:-1])

    assert store.get(k) is None
    assert store.entries() == []


@pytest.mark.parametrize("damage", [
    lambda p: p.write_text('{"key": '),                     # cut short
    lambda p: p.write_text(json.dumps({"key": "0" * 64, "object": "1" * 64})),  # another key
    lambda p: p.write_text(json.dumps({"key": p.stem, "object": "../../etc/passwd"})),
    lambda p: p.write_bytes(b"\x00\xff"),
])
def test_damaged_metadata_is_a_miss(store, damage):
    k = key_of("a")
    store.put(k, OBJ)
    damage(store._key_path(k))

    assert store.get(k) is None
    assert not store._key_path(k).exists()


def test_missing_blob_is_a_miss(store):
    k = key_of("a")
    entry = store.put(k, OBJ)
    entry.object_path.unlink()

    assert store.get(k) is None


def test_entries_and_clear(store):
    store.put(key_of("a"), OBJ, meta={"main": "a.bpf.c"})
    store.put(key_of("b"), OBJ + b"x", btf=BTF, meta={"main": "b.bpf.c"})
    (store.toolchain_dir / "vmlinux").mkdir(parents=True)
    (store.toolchain_dir / "vmlinux" / "vmlinux.h").write_text("x")

    listed = store.entries()
    removed, freed = store.clear()

    assert [e.meta["main"] for e in listed] == ["a.bpf.c", "b.bpf.c"]
    assert removed == 2 and freed >= 2 * len(OBJ) + len(BTF)
    assert store.entries() == [] and store.get(key_of("a")) is None
    assert (store.toolchain_dir / "vmlinux" / "vmlinux.h").exists()
    store.clear(toolchain=True)
    assert not store.toolchain_dir.exists()


def test_unwritable_cache_raises_cache_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(CacheError, match="LCC_CACHE_DIR"):
        ArtifactCache(blocker / "cache").put(key_of("a"), OBJ)


def test_keys_must_be_hex_digests(store):
    with pytest.raises(CacheError):
        store.get("../../x")


def _fill_once(root: str, key: str, log_path: str) -> None:
    store = ArtifactCache(root)
    with store.lock(key):
        if store.get(key) is None:
            with open(log_path, "a") as f:  # "compile": record that this process did it
                f.write(f"{os.getpid()}\n")
            store.put(key, OBJ)


def test_lock_gives_single_flight_across_processes(store, tmp_path):
    k = key_of("once")
    log_path = tmp_path / "compiles"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fill_once, args=(str(store.root), k, str(log_path)))
             for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)

    assert all(p.exitcode == 0 for p in procs)
    assert len(log_path.read_text().split()) == 1
    assert store.get(k).object == OBJ


# -- keys ---------------------------------------------------------------------------

BASE = dict(bundle=Bundle("t.bpf.c", {"t.bpf.c": "int x;"}), defines={"A": "1", "B": None},
            arch="x86_64", kernel="6.18.0", kernel_btf="build-id:ab",
            via={"local": {"clang": "clang 14", "lbc_h": "1234"}})


def test_cache_key_is_stable_and_canonical():
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert artifact_key(**BASE) == artifact_key(**{**BASE, "defines": {"B": None, "A": "1"}})


@pytest.mark.parametrize("change", [
    {"bundle": Bundle("t.bpf.c", {"t.bpf.c": "int y;"})},
    {"bundle": Bundle("t.bpf.c", {"t.bpf.c": "int x;", "t.h": ""})},
    {"defines": {"A": "2", "B": None}},
    {"defines": {"A": "1", "B": ""}},
    {"defines": {"A": "1"}},
    {"arch": "aarch64"},
    {"kernel": "6.18.1"},
    {"kernel_btf": "build-id:cd"},
    {"kernel_btf": None},
    {"via": {"local": {"clang": "clang 15", "lbc_h": "1234"}}},
    {"via": {"local": {"clang": "clang 14", "lbc_h": "5678"}}},
    {"via": {"server": "http://127.0.0.1:7655"}},
    {"via": {"docker": "lcc-compiler:latest"}},
])
def test_artifact_key_changes_with_every_input(change):
    assert artifact_key(**{**BASE, **change}) != artifact_key(**BASE)


# Computed before the compile modules became the package lcc.compile: a change
# here invalidates every user's cache.
PINNED_BUNDLE = Bundle("t.bpf.c", {"t.bpf.c": "int x;\n", "x.h": "#define Y 1\n"})


@pytest.mark.parametrize("kw,key", [
    (dict(defines={"A": "1", "B": None}, arch="x86_64", kernel="6.1.0-test",
          kernel_btf="build-id:00ff", via={"server": "http://127.0.0.1:7655"}),
     "c78e07e1c1f2bf697fd3486a4f4b3311ef545d4912928d12b64417e7a7020830"),
    (dict(defines={}, arch="aarch64", kernel="5.15.0", kernel_btf=None,
          via={"docker": "lcc-compiler:latest"}),
     "c7f918cd6a0c63ee9f812ef1f36def58726df63b6cdfa754a3da721878e9cc6d"),
    (dict(defines={"N": "ä"}, arch="x86_64", kernel="6.1.0", kernel_btf="sha256:ab",
          via={"local": {"clang": "clang version 17", "headers": {"lbc.h": "abc"}}}),
     "bc122b4ff61c1ec3f1a7fb6c5c42b15d88d5f9155dc7484b21b4ecfbcb298b9c"),
], ids=["server", "docker", "local"])
def test_artifact_key_is_pinned(kw, key):
    assert artifact_key(PINNED_BUNDLE, **kw) == key


# -- entries of a compile service: checked again on every read ------------------------------

def _service_entry(tmp_path, svc):
    """A cache, a service backend trusting ``svc``, and a bundle already compiled
    through them: (store, backend, bundle, key)."""
    store = ArtifactCache(tmp_path / "cache")
    backend = CachedBackend(
        ServiceBackend(svc.url, trust=TrustPolicy(read_key_file(svc.key_file(tmp_path)))),
        store)
    bundle = Bundle("t.bpf.c", {"t.bpf.c": "int x;"})
    art = backend.compile(bundle, kernel="6.18.0", arch="x86_64", defines={}, btf=False)
    assert not art.cache_hit and art.key_id == svc.ring.key_id
    return store, backend, bundle, art.key


def _again(backend, bundle):
    return backend.compile(bundle, kernel="6.18.0", arch="x86_64", defines={}, btf=False)


def _rewrite(store, key, **changes):
    path = store._key_path(key)
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_a_service_entry_is_a_hit_while_its_manifest_verifies(tmp_path):
    with FakeService() as svc:
        store, backend, bundle, key = _service_entry(tmp_path, svc)
        hit = _again(backend, bundle)

    assert (hit.cache_hit, hit.object, hit.key_id) == (True, SERVED, svc.ring.key_id)
    assert svc.compile_count() == 1
    assert json.loads(hit.manifest)["object"]["sha256"] == hashlib.sha256(SERVED).hexdigest()


def test_consistent_tampering_of_a_service_entry_is_caught(tmp_path, caplog):
    """Blob and key file replaced together, sha256 and sizes all consistent: the cache
    itself sees a whole entry, the signed manifest does not match it."""
    with FakeService() as svc:
        store, backend, bundle, key = _service_entry(tmp_path, svc)
        evil = hashlib.sha256(EVIL).hexdigest()
        store._put_blob(EVIL, evil, "o")
        _rewrite(store, key, object=evil, size=len(EVIL))
        assert store.get(key).object == EVIL  # consistent: no sha256 check catches it

        with caplog.at_level(logging.WARNING, logger="lcc.compile.cache"):
            again = _again(backend, bundle)

    assert "is refused" in caplog.text and "not the one its signed manifest" in caplog.text
    assert (again.cache_hit, again.object) == (False, SERVED)  # dropped, fetched again
    assert svc.compile_count() == 2
    assert store.get(key).object == SERVED


@pytest.mark.parametrize("forge", ["attacker's key", "edited manifest", "no manifest",
                                   "another request"])
def test_a_forged_manifest_in_a_service_entry_is_caught(tmp_path, forge):
    with FakeService() as svc:
        store, backend, bundle, key = _service_entry(tmp_path, svc)
        meta = json.loads(store._key_path(key).read_text())
        payload = {"bundle": bundle.to_dict(), "kernel": "6.18.0", "arch": "x86_64",
                   "defines": {}}
        if forge == "attacker's key":
            body = answer(payload, obj=EVIL, ring=KeyRing.generate())
        elif forge == "edited manifest":
            body = answer(payload, obj=EVIL, ring=svc.ring)
            body["signature"] = meta["signature"]
        elif forge == "another request":
            other = {**payload, "bundle": {"main": "o.bpf.c", "files": {"o.bpf.c": "int o;"}}}
            body = answer(other, obj=EVIL, ring=svc.ring)
        else:
            body = {"manifest": None, "signature": None, "key_id": None}
        evil = hashlib.sha256(EVIL).hexdigest()
        store._put_blob(EVIL, evil, "o")
        _rewrite(store, key, object=evil, size=len(EVIL), manifest=body["manifest"],
                 signature=body["signature"], key_id=body["key_id"])

        again = _again(backend, bundle)

    assert (again.cache_hit, again.object) == (False, SERVED)
    assert svc.compile_count() == 2


def test_an_entry_signed_by_a_key_no_longer_trusted_is_dropped(tmp_path):
    with FakeService() as svc:
        store, backend, bundle, key = _service_entry(tmp_path, svc)
        backend.inner.trust = TrustPolicy()  # the key was unpinned since

        with pytest.raises(UntrustedArtifact, match="no compile service key is trusted"):
            _again(backend, bundle)

    assert store.get(key) is None  # the old entry went; nothing new was stored
