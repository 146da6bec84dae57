"""The derived per-kernel files (vmlinux.h, its cuts and index, PCHs) in the one
disk budget: evicted least recently used, made again when needed, kept while in use.

Two kernels: the host BTF, and a copy of it with one more (unreferenced)
string uploaded under another release, so that its sha256, and with it its
derived set, differ.  The budget is measured in the same run: the uploads
plus one and a half derived sets, so two sets never fit together.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest
from conftest import start_service
from lcc_server.ledger import DERIVED, Ledger
from servertools import toolchain_missing

pytestmark = pytest.mark.server

HOST_BTF = Path("/sys/kernel/btf/vmlinux")
RELEASE_B = "6.1.0-lcc-derived-b"


def _other_btf() -> bytes:
    """The host BTF with one more string at the end of its string section."""
    data = HOST_BTF.read_bytes()
    magic, _ver, _flags, hdr_len, _toff, _tlen, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data)
    assert magic == 0xEB9F and hdr_len + str_off + str_len == len(data), \
        "the host BTF does not end with its string section"
    extra = b"lcc_derived_budget_test\0"
    return data[:20] + struct.pack("<I", str_len + len(extra)) + data[24:] + extra


def _set_dirs(state: Path, sha: str) -> list[Path]:
    vm = [p for p in (state / "work" / "vmlinux").glob(f"{sha}*") if p.is_dir()]
    pch = [p for p in (state / "work" / "pch").glob("*")
           if (p / "inputs.txt").is_file()
           and any(f"/{v.name}/" in (p / "inputs.txt").read_text() for v in vm)]
    return vm + pch


def _size(dirs: list[Path]) -> int:
    return sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())


def _put(api, release: str, data: bytes):
    return api.put(f"/v1/btf/x86_64/{release}", content=data,
                   headers={"content-type": "application/octet-stream"})


def _compile(api, compile_body, unique_source, kernel: str | None):
    body = compile_body(unique_source("derived"), **({"kernel": kernel} if kernel else {}))
    reply = api.post("/v1/compile", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def kernels(tmp_path_factory, compile_body, unique_source):
    """(sha of A, sha of B, budget in MB): one derived set measured in a roomy service."""
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    other = _other_btf()
    sha_a = hashlib.sha256(HOST_BTF.read_bytes()).hexdigest()
    sha_b = hashlib.sha256(other).hexdigest()
    state = tmp_path_factory.mktemp("derived-measure")
    svc = start_service(state, LCC_MAX_ARTIFACT_MB="4096")
    try:
        with svc.client() as api:
            assert _put(api, RELEASE_B, other).status_code == 201
            _compile(api, compile_body, unique_source, None)
        one_set = _size(_set_dirs(state, sha_a))
        uploads = _size([state / "btf"])
    finally:
        svc.child.stop()
        shutil.rmtree(state, ignore_errors=True)
    assert one_set > 1 << 20, "the host kernel's derived set was not made"
    budget = (uploads + one_set * 3 // 2 + (1 << 20)) >> 20
    assert budget << 20 < uploads + 2 * one_set, "two derived sets would fit the budget"
    return sha_a, sha_b, other, budget


@pytest.fixture
def service(tmp_path, kernels):
    _sha_a, _sha_b, other, budget = kernels
    svc = start_service(tmp_path, LCC_MAX_ARTIFACT_MB=str(budget))
    with svc.client() as api:
        assert _put(api, RELEASE_B, other).status_code == 201
    yield svc
    svc.child.stop()


def test_the_least_recently_used_kernel_set_is_evicted_and_made_again(
        service, kernels, compile_body, unique_source):
    sha_a, sha_b, other, budget = kernels
    state = service.state_dir
    with service.client() as api:
        _compile(api, compile_body, unique_source, None)  # kernel A, the host
        assert _set_dirs(state, sha_a)
        _compile(api, compile_body, unique_source, RELEASE_B)

        # A, now the least recently used, made room for B: files and ledger entry gone
        assert not _set_dirs(state, sha_a)
        assert _set_dirs(state, sha_b)
        ledger = Ledger(state / "artifacts" / "ledger.sqlite")
        try:
            assert set(ledger.names(DERIVED)) == {DERIVED + sha_b}
        finally:
            ledger.close()
        assert service.metric("lcc_derived_evicted") >= 1
        assert service.metric("lcc_state_disk_bytes", part="derived") == \
            _size(_set_dirs(state, sha_b))
        # the upload itself stays: uploads are bounded by the release cap, not evicted
        assert any(p.stat().st_size == len(other)
                   for p in (state / "btf").rglob("*") if p.is_file())

        # compiling for A again makes its set again, within the one budget
        again = _compile(api, compile_body, unique_source, None)
        assert again["digest"]
        assert _set_dirs(state, sha_a)
        ledger = Ledger(state / "artifacts" / "ledger.sqlite")
        try:
            assert DERIVED + sha_a in ledger.names(DERIVED)
            assert ledger.total() <= (budget << 20) - _size([state / "btf"])
        finally:
            ledger.close()


def test_a_set_in_use_is_not_evicted(service, kernels, compile_body, unique_source):
    sha_a, sha_b, _other, _budget = kernels
    state = service.state_dir
    with service.client() as api:
        _compile(api, compile_body, unique_source, None)
        # Another process holds A's set, as a worker process compiling for A does.
        ledger = Ledger(state / "artifacts" / "ledger.sqlite")
        ledger.pin(DERIVED + sha_a)
        try:
            _compile(api, compile_body, unique_source, RELEASE_B)
            # over the budget, the entries not in use give way; A's set is in use
            assert _set_dirs(state, sha_a), "a set in use was evicted"
        finally:
            ledger.unpin(DERIVED + sha_a)
        # Released: the next compile for B makes room by evicting A.
        _compile(api, compile_body, unique_source, RELEASE_B)
        assert not _set_dirs(state, sha_a)
        ledger.close()
