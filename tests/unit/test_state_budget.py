"""The state directory's one disk budget: a ledger every worker process shares,
room left for BTF uploads and derived headers, and a cap on uploaded releases."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lcc_server.artifacts import Artifact, ArtifactStore
from lcc_server.btf_store import BtfConflict, BtfQuotaExceeded, BtfStore
from lcc_server.derived import DerivedFiles
from lcc_server.settings import Settings
from lcc_server.stores import open_stores
from lcc_server.stores.usage import StateUsage

# A raw BTF header (magic, version 1, 24-byte header) with a 4-byte string section.
TINY_BTF = (b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + (0).to_bytes(4, "little") * 2
            + (0).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"\0abc")


def art(n: int, size: int = 1000) -> Artifact:
    data = bytes([n % 256]) * size
    return Artifact(digest=hashlib.sha256(data).hexdigest(), object=data)


def on_disk(root: Path) -> set[str]:
    return {p.stem for p in (root / "objects").glob("*.o")}


def test_processes_sharing_a_directory_keep_one_budget(tmp_path):
    parent = ArtifactStore(tmp_path, disk_bytes=3500)
    for n in range(2):
        parent.put(art(n))
    child = textwrap.dedent(f"""
        import hashlib
        from lcc_server.artifacts import Artifact, ArtifactStore
        store = ArtifactStore({str(tmp_path)!r}, disk_bytes=3500)
        for n in range(10, 13):
            data = bytes([n]) * 1000
            store.put(Artifact(digest=hashlib.sha256(data).hexdigest(), object=data))
        print(store.evicted)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env=os.environ, check=True)

    # the child evicted the parent's two entries, the oldest, to stay under the one budget
    assert out.stdout.strip() == "2"
    assert on_disk(tmp_path) == {art(n).digest for n in range(10, 13)}
    assert parent.disk_usage() == sum(p.stat().st_size for p in (tmp_path / "objects").iterdir())
    assert parent.get(art(0).digest) is None  # gone for the parent too
    parent.put(art(20))
    assert len(on_disk(tmp_path)) == 3 and parent.disk_usage() <= 3500


def test_uploads_and_derived_headers_count_against_the_budget(tmp_path):
    (tmp_path / "btf" / "x86_64").mkdir(parents=True)
    (tmp_path / "btf" / "x86_64" / "6.0.btf").write_bytes(b"b" * 1200)
    sha = "c" * 64
    vmdir = tmp_path / "work" / "vmlinux" / f"{sha}.2"
    vmdir.mkdir(parents=True)
    (vmdir / "vmlinux.h").write_bytes(b"h" * 500)
    (tmp_path / "work" / "pch" / "k1").mkdir(parents=True)
    (tmp_path / "work" / "pch" / "k1" / "lbc.pch").write_bytes(b"p" * 300)
    (tmp_path / "work" / "pch" / "k1" / "inputs.txt").write_text(f"{vmdir}/vmlinux.h\n")
    usage = StateUsage(tmp_path)
    assert usage.parts() == {"btf_uploads": 1200, "derived": 500 + 300 + len(f"{vmdir}") + 11}

    store = ArtifactStore(tmp_path / "artifacts", disk_bytes=4500, reserved=usage.reserved)
    derived = DerivedFiles(tmp_path / "work", store)
    derived.adopt()  # the kernel's set: vmlinux.h and the PCH built over it, one entry
    assert store.derived_usage() == usage.parts()["derived"]
    for n in range(3):
        store.put(art(n))

    # the uploads are left room for; the derived set, least recently used, made room
    assert store.budget() == 4500 - 1200
    assert on_disk(tmp_path / "artifacts") == {art(n).digest for n in range(3)}
    assert not vmdir.exists() and not (tmp_path / "work" / "pch" / "k1").exists()
    assert store.derived_usage() == 0 and derived.evicted == 1
    assert (tmp_path / "btf" / "x86_64" / "6.0.btf").exists()  # uploads are never evicted


def test_uploaded_releases_are_capped(tmp_path):
    store = BtfStore(tmp_path, host_btf=tmp_path / "none", max_releases=2)
    store.put("x86_64", "6.0-a", TINY_BTF)
    store.put("x86_64", "6.0-b", TINY_BTF)

    with pytest.raises(BtfQuotaExceeded, match="LCC_MAX_BTF_RELEASES") as info:
        store.put("x86_64", "6.0-c", TINY_BTF)
    assert isinstance(info.value, BtfConflict)  # answered 409 like other conflicts
    assert store.put("x86_64", "6.0-a", TINY_BTF)[1] is False  # what is there still works
    assert store.upload_count() == 2
    store.remove("x86_64", "6.0-b")
    assert store.put("x86_64", "6.0-c", TINY_BTF)[1] is True


def test_settings_wire_the_budget_and_the_cap(tmp_path):
    settings = Settings.from_env({"LCC_STATE_DIR": str(tmp_path), "LCC_MAX_ARTIFACT_MB": "3",
                                  "LCC_MAX_BTF_RELEASES": "7"})
    stores = open_stores(settings)
    assert stores.btf.max_releases == 7
    assert stores.artifacts.disk_bytes == 3 << 20
    assert stores.artifacts.reserved == stores.usage.reserved
    assert settings.to_env()["LCC_MAX_BTF_RELEASES"] == "7"
