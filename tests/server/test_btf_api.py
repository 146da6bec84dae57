"""The BTF store over HTTP: upload, fetch, list, conflicts, compiling for an upload."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture
def release():
    return f"6.1.0-lcc-test-{secrets.token_hex(4)}"


def _put(api, release, data, **params):
    return api.put(f"/v1/btf/x86_64/{release}", content=data, params=params,
                   headers={"content-type": "application/octet-stream"})


def test_host_kernel_is_listed_by_default(api):
    entries = api.get("/v1/btf").json()["btf"]
    host = [e for e in entries if e["source"] == "host"]

    assert host == [{"arch": os.uname().machine, "release": os.uname().release, "source": "host",
                     "size": os.path.getsize(HOST_BTF), "sha256": host[0]["sha256"],
                     "owner": "host"}]
    raw = api.get(f"/v1/btf/{os.uname().machine}/{os.uname().release}")
    assert hashlib.sha256(raw.content).hexdigest() == host[0]["sha256"]


def test_upload_get_list(api, release):
    data = HOST_BTF.read_bytes()

    created = _put(api, release, data)
    again = _put(api, release, data)
    fetched = api.get(f"/v1/btf/x86_64/{release}")
    listed = [e for e in api.get("/v1/btf").json()["btf"] if e["release"] == release]

    assert created.status_code == 201, created.text
    assert created.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert again.status_code == 200
    assert fetched.content == data
    assert listed == [created.json()]
    assert listed[0]["source"] == "upload"


def test_compile_for_an_uploaded_kernel(api, release, compile_body, unique_source):
    assert _put(api, release, HOST_BTF.read_bytes()).status_code == 201
    body = compile_body(unique_source("upload"))

    for_upload = api.post("/v1/compile", json={**body, "kernel": release, "arch": "x86_64"})
    for_host = api.post("/v1/compile", json=body)

    assert for_upload.status_code == 200, for_upload.text
    # Same BTF under another name: same object, compiled once.
    assert for_upload.json()["digest"] == for_host.json()["digest"]
    assert for_host.json()["cached"] is True


def test_different_btf_conflicts_unless_replace(api, release, compile_body, unique_source):
    src = unique_source("tailored").replace(
        "lbc_count(&counts, &pid);",
        "lbc_count(&counts, &pid);\n\tstruct task_struct *t = (void *)bpf_get_current_task();\n"
        "\tif (BPF_CORE_READ(t, pid) == 0) return 1;")
    small = base64.b64decode(api.post("/v1/compile", json={**compile_body(src), "btf": True})
                             .json()["btf"])
    assert _put(api, release, HOST_BTF.read_bytes()).status_code == 201

    conflict = _put(api, release, small)
    replaced = _put(api, release, small, replace="true")

    assert conflict.status_code == 409
    assert conflict.json()["error"] == "conflict"
    assert replaced.status_code == 201, replaced.text
    assert api.get(f"/v1/btf/x86_64/{release}").content == small


def test_unknown_kernel_hints_at_upload(api, compile_body):
    r = api.post("/v1/compile", json={**compile_body(), "kernel": "4.19.0-unknown"})

    assert r.status_code == 404
    assert r.json()["error"] == "btf_missing"
    assert "lcc btf push" in r.json()["detail"]
