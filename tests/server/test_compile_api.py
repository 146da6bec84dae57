"""The compile service's API against real clang under uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

TOOL_H = """\
#ifndef __TOOL_H
#define __TOOL_H
#define MAX_ENTRIES 256
struct event {
\tu32 pid;
\tchar comm[TASK_COMM_LEN];
};
#endif
"""

TOOL_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"
#include "include/tool.h"

LBC_RINGBUF(events, struct event, 1 << 16);
LBC_ARRAY(seen, u32, u64, MAX_ENTRIES);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tstruct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

\tif (!e)
\t\treturn 0;
\te->pid = bpf_get_current_pid_tgid() >> 32;
\tbpf_get_current_comm(e->comm, sizeof(e->comm));
\tbpf_ringbuf_submit(e, 0);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _elf_machine(obj: bytes) -> int:
    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(obj)).header["e_machine"]


def test_compile_returns_object_digest_and_summary(api, compile_body, unique_source):
    r = api.post("/v1/compile", json=compile_body(unique_source("summary")))

    assert r.status_code == 200, r.text
    body = r.json()
    obj = base64.b64decode(body["object"])
    assert body["digest"] == hashlib.sha256(obj).hexdigest()
    assert _elf_machine(obj) == "EM_BPF"
    assert body["programs"] == [{"name": "on_getpid",
                                 "section": "tracepoint/syscalls/sys_enter_getpid"}]
    assert body["maps"] == [{"name": "counts", "section": ".maps"}]
    assert body["warnings"] == []
    assert body["btf"] is None
    assert body["cached"] is False
    assert set(body["toolchain"]) >= {"clang", "bpftool", "lbc_h"}


def test_same_request_again_is_cached_with_same_digest(api, compile_body, unique_source):
    body = compile_body(unique_source("again"))
    first = api.post("/v1/compile", json=body).json()
    second = api.post("/v1/compile", json=body).json()

    assert second["cached"] is True
    assert second["digest"] == first["digest"]
    assert second["object"] == first["object"]


def test_multi_file_bundle(api):
    files = {"tool.bpf.c": TOOL_C, "include/tool.h": TOOL_H}
    r = api.post("/v1/compile", json={"bundle": {"main": "tool.bpf.c", "files": files}})

    assert r.status_code == 200, r.text
    assert {m["name"] for m in r.json()["maps"]} == {"events", "seen"}


def test_compile_error_is_422_with_file_and_line(api):
    files = {"bad.bpf.c": '#include "lbc.h"\n#include "inc/bad.h"\nint ok;\n',
             "inc/bad.h": "int f(void)\n{\n\treturn undefined_thing;\n}\n"}
    r = api.post("/v1/compile", json={"bundle": {"main": "bad.bpf.c", "files": files}})

    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "compile"
    errors = [d for d in body["diagnostics"] if "error" in d["severity"]]
    assert errors[0]["file"] == "inc/bad.h"
    assert errors[0]["line"] == 3
    assert "undefined_thing" in errors[0]["message"]
    assert "inc/bad.h:3:" in body["log"]
    assert "/tmp" not in body["log"] and "/work" not in body["log"]


def test_warnings_come_back_with_the_object(api, unique_source):
    src = unique_source("warn") + "#warning lcc-test-warning\n"
    r = api.post("/v1/compile", json={"bundle": {"main": "w.bpf.c", "files": {"w.bpf.c": src}}})

    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    assert [(w["file"], w["severity"]) for w in warnings] == [("w.bpf.c", "warning")]
    assert "lcc-test-warning" in warnings[0]["message"]


def test_defines_change_the_object(api, compile_body):
    src = compile_body()["bundle"]["files"]["hello.bpf.c"].replace(
        "lbc_count(&counts, &pid);", "lbc_count(&counts, &pid);\n\tif (pid == TARGET) return 1;")
    a = api.post("/v1/compile", json=compile_body(src, defines={"TARGET": "1"}))
    b = api.post("/v1/compile", json=compile_body(src, defines={"TARGET": "2"}))
    missing = api.post("/v1/compile", json=compile_body(src))

    assert a.status_code == b.status_code == 200
    assert a.json()["digest"] != b.json()["digest"]
    assert missing.status_code == 422
    assert any("TARGET" in d["message"] for d in missing.json()["diagnostics"])


def test_tailored_btf_when_asked(api, compile_body, unique_source):
    src = unique_source("btf").replace(
        "lbc_count(&counts, &pid);",
        "lbc_count(&counts, &pid);\n\tstruct task_struct *t = (void *)bpf_get_current_task();\n"
        "\tif (BPF_CORE_READ(t, tgid) == 0) return 1;")
    r = api.post("/v1/compile", json={**compile_body(src), "btf": True})

    assert r.status_code == 200, r.text
    btf = base64.b64decode(r.json()["btf"])
    assert btf[:2] in (b"\x9f\xeb", b"\xeb\x9f")
    assert len(btf) < os.path.getsize("/sys/kernel/btf/vmlinux") // 10


def test_artifact_by_digest(api, compile_body, unique_source):
    compiled = api.post("/v1/compile", json=compile_body(unique_source("artifact"))).json()
    digest = compiled["digest"]

    as_json = api.get(f"/v1/artifacts/{digest}")
    as_raw = api.get(f"/v1/artifacts/{digest}", headers={"Accept": "application/octet-stream"})

    assert as_json.status_code == 200
    assert as_json.json()["object"] == compiled["object"]
    assert as_json.json()["programs"] == compiled["programs"]
    assert as_raw.content == base64.b64decode(compiled["object"])
    assert as_raw.headers["content-type"] == "application/octet-stream"


def test_identical_concurrent_requests_compile_once(lcc_service, api, compile_body, unique_source):
    body = compile_body(unique_source("flight"))
    before = lcc_service.metric("lcc_compiles_total")

    def post(_):
        with lcc_service.client() as c:
            return c.post("/v1/compile", json=body)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(post, range(16)))

    assert [r.status_code for r in replies] == [200] * 16
    assert len({r.json()["digest"] for r in replies}) == 1
    assert sum(not r.json()["cached"] for r in replies) == 1
    assert lcc_service.metric("lcc_compiles_total") - before == 1


def test_token_required(lcc_service, compile_body):
    with lcc_service.client(token=None) as anon, lcc_service.client(token="wrong") as wrong:
        assert anon.post("/v1/compile", json=compile_body()).status_code == 401
        assert wrong.post("/v1/compile", json=compile_body()).status_code == 401
        assert anon.get("/v1/btf").status_code == 401
        assert anon.get("/metrics").status_code == 401
        r = anon.get("/v1/artifacts/" + "0" * 64)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/openapi.json").status_code == 401  # the API's document too
        assert anon.get("/docs").status_code == 401


def test_metrics_count_requests_and_cache_hits(lcc_service, api, compile_body, unique_source):
    body = compile_body(unique_source("metrics"))
    hits = lcc_service.metric("lcc_cache_hits_total", kind="artifact")
    oks = lcc_service.metric("lcc_requests_total", endpoint="/v1/compile", status="200")
    timed = lcc_service.metric("lcc_compile_seconds_count")
    api.post("/v1/compile", json=body)
    api.post("/v1/compile", json=body)

    assert lcc_service.metric("lcc_cache_hits_total", kind="artifact") == hits + 1
    assert lcc_service.metric("lcc_requests_total", endpoint="/v1/compile", status="200") == oks + 2
    assert lcc_service.metric("lcc_compile_seconds_count") == timed + 1  # the miss compiled
    text = api.get("/metrics").text
    assert "lcc_compile_queue_depth" in text
    assert lcc_service.metric("lcc_artifact_disk_bytes") > 0  # the object just stored
    assert lcc_service.metric("lcc_artifacts_evicted") == 0   # far below the 2 GiB default


def test_openapi_documents_the_api(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/compile", "/v1/artifacts/{digest}", "/v1/btf", "/v1/btf/{arch}/{release}",
            "/healthz", "/metrics"} <= set(paths)
    assert api.get("/docs").status_code == 200


PROGS = sorted((Path(__file__).resolve().parent.parent / "progs").glob("*.bpf.c"))


@pytest.mark.parametrize("prog", PROGS, ids=[p.name for p in PROGS])
def test_runtime_test_programs_compile_through_the_service(api, prog):
    from lcc.compile.bundle import Bundle

    bundle = Bundle.from_path(prog)
    r = api.post("/v1/compile", json={"bundle": bundle.to_dict()})

    assert r.status_code == 200, r.text[:2000]
    assert r.json()["programs"], "every test program has at least one program"
