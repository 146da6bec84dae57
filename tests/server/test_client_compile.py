"""lcc's compile pipeline (lcc.compile.build) against the real service on 127.0.0.1.

Uses the session service of tests/server/conftest.py (token-protected); the
client gets its token through LCC_TOKEN, as users do.  Each test has its own
client cache.  One test runs its own service through ``lcc server`` and
stops it, to show that a cache hit contacts nobody.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import secrets
import sys
from pathlib import Path

import pytest

from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache
from lcc.compile import build
from lcc.compile.trust import TrustedKey, TrustStore, read_key_file
from lcc.errors import CompileError, CompileServiceError
from lcc.compile.service import ServiceClient
from lcc_server.server import Spawned, spawn

pytestmark = pytest.mark.server

TOOL_H = """\
#ifndef __TOOL_H
#define __TOOL_H
#include "common/bits.bpf.h"
struct event {
\tu32 pid;
\tu32 slot;
\tchar comm[TASK_COMM_LEN];
};
#endif
"""

BITS_H = """\
#ifndef __BITS_BPF_H
#define __BITS_BPF_H
static __always_inline u64 log2_u64(u64 v) { return lbc_log2l(v); }
#endif
"""

MAPS_H = """\
#ifndef __MAPS_BPF_H
#define __MAPS_BPF_H
#include "bits.bpf.h"
LBC_HASH(starts, u32, u64, 1024);
#endif
"""

TOOL_C = """\
// SPDX-License-Identifier: GPL-2.0
/* A multi-file tool in the libbpf-tools layout. */
#include "lbc.h"
#include "tool.h"
#include "common/maps.bpf.h"

LBC_RINGBUF(events, struct event, 1 << 16);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tstruct event *e;
\tu32 pid = bpf_get_current_pid_tgid() >> 32;

\te = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
\tif (!e)
\t\treturn 0;
\te->pid = pid;
\te->slot = log2_u64(pid);
\tbpf_get_current_comm(e->comm, sizeof(e->comm));
\tbpf_ringbuf_submit(e, 0);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

CORE_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

LBC_HASH(parents, u32, u32, 64);

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
\tstruct task_struct *task = (struct task_struct *)bpf_get_current_task();
\tu32 tgid = BPF_CORE_READ(task, tgid);
\tu32 ppid = BPF_CORE_READ(task, real_parent, tgid);

\tbpf_map_update_elem(&parents, &tgid, &ppid, BPF_ANY);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def token(lcc_service, monkeypatch):
    monkeypatch.setenv("LCC_TOKEN", lcc_service.token)
    monkeypatch.delenv("LCC_SERVER", raising=False)
    monkeypatch.delenv("LCC_BACKEND", raising=False)
    return lcc_service.token


@pytest.fixture
def store(tmp_path):
    return ArtifactCache(tmp_path / "client-cache")


def unique(source: str, tag: str) -> str:
    """``source`` that no cache has seen."""
    return f"// {tag} {secrets.token_hex(8)}\n{source}"


def write_tool(root: Path, tag: str) -> Path:
    (root / "common").mkdir(parents=True)
    (root / "tool.h").write_text(TOOL_H)
    (root / "common" / "bits.bpf.h").write_text(BITS_H)
    (root / "common" / "maps.bpf.h").write_text(MAPS_H)
    (root / "tool.bpf.c").write_text(unique(TOOL_C, tag))
    return root / "tool.bpf.c"


def elf_machine(obj: bytes) -> str:
    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(obj)).header["e_machine"]


def test_multi_file_program_compiles_through_the_service(lcc_service, token, store, tmp_path):
    bundle = Bundle.from_path(write_tool(tmp_path / "tool", "multi"))

    art = build(bundle, server=lcc_service.url, cache=store)

    assert sorted(bundle.files) == ["common/bits.bpf.h", "common/maps.bpf.h", "tool.bpf.c",
                                    "tool.h"]
    assert elf_machine(art.object) == "EM_BPF"
    assert art.digest == hashlib.sha256(art.object).hexdigest()
    assert art.origin == lcc_service.url
    assert set(art.toolchain) >= {"clang", "lbc_h"}


def test_cache_hits_on_both_sides_by_digest(lcc_service, token, store, hello_source):
    bundle = Bundle.from_string(unique(hello_source, "both-sides"), name="hello.bpf.c")

    compiled = build(bundle, server=lcc_service.url, cache=store)
    store.clear()
    server_hit = build(bundle, server=lcc_service.url, cache=store)
    client_hit = build(bundle, server=lcc_service.url, cache=store)

    assert (compiled.cached, compiled.cache_hit) == (False, False)
    assert (server_hit.cached, server_hit.cache_hit) == (True, False)
    assert (client_hit.cached, client_hit.cache_hit) == (True, True)
    assert compiled.digest == server_hit.digest == client_hit.digest
    assert client_hit.object == compiled.object
    with ServiceClient(lcc_service.url) as c:  # the service keeps it by the same digest
        assert c.artifact(compiled.digest) == compiled.object


def test_the_service_compiles_what_the_local_toolchain_compiles(lcc_service, token, store,
                                                                hello_source):
    bundle = Bundle.from_string(unique(hello_source, "same-bytes"), name="hello.bpf.c")

    remote = build(bundle, server=lcc_service.url, cache=store)
    local = build(bundle, backend="local", cache=store)

    assert remote.digest == local.digest
    assert (remote.origin, local.origin) == (lcc_service.url, "local")


def test_corrupt_client_entry_is_fetched_again(lcc_service, token, store, hello_source):
    bundle = Bundle.from_string(unique(hello_source, "corrupt"), name="hello.bpf.c")
    first = build(bundle, server=lcc_service.url, cache=store)
    blob = store.blob_path(first.digest, "o")
    blob.write_bytes(blob.read_bytes()[:-7])

    again = build(bundle, server=lcc_service.url, cache=store)
    third = build(bundle, server=lcc_service.url, cache=store)

    assert (again.cache_hit, again.cached, again.digest) == (False, True, first.digest)
    assert (third.cache_hit, third.object) == (True, first.object)


def test_concurrent_clients_of_one_cache_ask_the_service_once(lcc_service, token, store,
                                                              hello_source):
    bundle = Bundle.from_string(unique(hello_source, "flight"), name="hello.bpf.c")
    before = lcc_service.metric("lcc_requests_total", endpoint="/v1/compile")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        arts = list(pool.map(lambda _: build(bundle, server=lcc_service.url, cache=store),
                             range(8)))

    assert len({a.digest for a in arts}) == 1
    assert sum(not a.cache_hit for a in arts) == 1
    assert lcc_service.metric("lcc_requests_total", endpoint="/v1/compile") - before == 1


def test_compile_error_comes_back_with_diagnostics(lcc_service, token, store, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "bad.h").write_text("#define BROKEN int x = ;\n")
    (root / "bad.bpf.c").write_text(unique('#include "lbc.h"\n#include "bad.h"\nBROKEN\n', "err"))

    with pytest.raises(CompileError) as exc:
        build(Bundle.from_path(root / "bad.bpf.c"), server=lcc_service.url, cache=store)

    errors = [d for d in exc.value.diagnostics if d.severity == "error"]
    assert errors and errors[0].file == "bad.bpf.c" and errors[0].line == 4
    assert "expected expression" in errors[0].message
    assert store.entries() == []


def test_without_token_the_client_explains(lcc_service, token, store, hello_source, monkeypatch):
    monkeypatch.delenv("LCC_TOKEN")
    bundle = Bundle.from_string(unique(hello_source, "401"), name="hello.bpf.c")

    with pytest.raises(CompileServiceError) as exc:
        build(bundle, server=lcc_service.url, cache=store)

    assert exc.value.status == 401
    assert "LCC_TOKEN" in str(exc.value) and lcc_service.url in str(exc.value)


def test_env_selects_the_service(lcc_service, token, store, hello_source, monkeypatch):
    monkeypatch.setenv("LCC_SERVER", lcc_service.url + "/")
    bundle = Bundle.from_string(unique(hello_source, "env"), name="hello.bpf.c")

    art = build(bundle, cache=store)

    assert art.origin == lcc_service.url


def test_tailored_btf_is_returned_and_stored(lcc_service, token, store):
    bundle = Bundle.from_string(unique(CORE_C, "btf"), name="core.bpf.c")

    plain = build(bundle, server=lcc_service.url, cache=store)
    tailored = build(bundle, server=lcc_service.url, cache=store, btf=True)
    hit = build(bundle, server=lcc_service.url, cache=store, btf=True)
    uncached = build(bundle, server=lcc_service.url, cache=False, btf=True)

    assert plain.btf is None and plain.btf_path is None
    assert tailored.btf[:2] in (b"\x9f\xeb", b"\xeb\x9f")
    assert b"task_struct" in tailored.btf
    assert len(tailored.btf) < os.path.getsize("/sys/kernel/btf/vmlinux") / 100
    assert Path(tailored.btf_path).read_bytes() == tailored.btf
    assert (hit.cache_hit, hit.btf_path, hit.digest) == (True, tailored.btf_path, plain.digest)
    assert Path(uncached.btf_path).read_bytes() == tailored.btf


def test_unknown_kernel_says_how_to_push_btf(lcc_service, token, store, hello_source):
    bundle = Bundle.from_string(unique(hello_source, "nokernel"), name="hello.bpf.c")

    with pytest.raises(CompileServiceError) as exc:
        build(bundle, server=lcc_service.url, cache=store, kernel="4.19.0-unknown",
              arch="x86_64")

    assert exc.value.status == 404
    assert "lcc btf push" in str(exc.value)


# -- a service of our own, started by `lcc server` and stopped ------------------------------

@pytest.fixture
def own_service(tmp_path, monkeypatch):
    """``own_service(**env)``: `lcc server` on a free port with a token and ``env``,
    its signing key pinned; returns (url, stop).  Stopped after the test."""
    started: list[Spawned] = []

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "lcc.cli", "server", "--port", str(port), "--state-dir",
                str(tmp_path / f"state-{port}"), "--log-level", "warning"]

    def start(**extra: str):
        token = secrets.token_hex(8)
        child = spawn({"LCC_TOKEN": token, "LCC_MAX_CONCURRENCY": "1", "LCC_WARM": "0", **extra},
                      command=command, log=tmp_path / f"server-{len(started)}.log")
        started.append(child)
        monkeypatch.setenv("LCC_TOKEN", token)
        (key,) = read_key_file(tmp_path / f"state-{child.url.rsplit(':', 1)[1]}" / "keys"
                               / "signing.pub")
        TrustStore().add(TrustedKey(key.raw, f"test service {child.url}"))
        return child.url, lambda: child.stop(timeout=30)

    yield start
    for child in started:
        child.stop(timeout=30)


def test_a_cache_hit_contacts_nobody(own_service, store, hello_source):
    url, stop = own_service()
    bundle = Bundle.from_string(unique(hello_source, "nobody"), name="hello.bpf.c")
    compiled = build(bundle, server=url, cache=store)

    stop()
    hit = build(bundle, server=url, cache=store)

    assert (hit.cache_hit, hit.digest, hit.origin) == (True, compiled.digest, url)
    other = Bundle.from_string(unique(hello_source, "miss"), name="hello.bpf.c")
    with pytest.raises(CompileServiceError, match="unreachable"):
        build(other, server=url, cache=store)  # the service is really gone


def test_client_uploads_its_btf_when_the_service_lacks_it(own_service, store, hello_source,
                                                          monkeypatch):
    url, _stop = own_service(LCC_HOST_BTF="/nonexistent/vmlinux")  # a service with no kernels
    bundle = Bundle.from_string(unique(hello_source, "push"), name="hello.bpf.c")
    me = os.uname()

    monkeypatch.setenv("LCC_PUSH_BTF", "0")
    with pytest.raises(CompileServiceError, match="lcc btf push") as exc:
        build(bundle, server=url, cache=store)
    assert exc.value.status == 404
    monkeypatch.delenv("LCC_PUSH_BTF")
    art = build(bundle, server=url, cache=store)

    assert art.origin == url and not art.cached
    with ServiceClient(url) as c:
        kernels = [(e["arch"], e["release"], e["source"]) for e in c.btf_list()]
    assert kernels == [(me.machine, me.release, "upload")]
