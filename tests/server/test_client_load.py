"""Programs compiled by the real service, loaded into this kernel through ClbcBase.

Needs root and kernel BTF (marker ``bpf``) besides the service.  Events are
triggered by the test's own syscalls and filtered by its pid.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from lcc import ClbcBase
from lcc.compile.bundle import Bundle
from lcc.compile.cache import ArtifactCache
from lcc.compile import build
from lcc.errors import ProgramLoadError

pytestmark = [pytest.mark.server, pytest.mark.bpf]

PROGS = Path(__file__).resolve().parent.parent / "progs"
# Test programs of the runtime that load whole (errors, fallback and verifier are
# rejected on purpose).
LOADABLE = sorted(p.name.removesuffix(".bpf.c") for p in PROGS.glob("*.bpf.c")
                  if p.name not in ("errors.bpf.c", "fallback.bpf.c", "verifier.bpf.c"))

EVENTS_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"
#include "ev.h"

const volatile u32 targ_tgid = 0;

LBC_RINGBUF(events, struct ev, 1 << 12);

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
\tstruct task_struct *task = (struct task_struct *)bpf_get_current_task();
\tu32 tgid = BPF_CORE_READ(task, tgid);
\tstruct ev *e;

\tif (tgid != targ_tgid)
\t\treturn 0;
\te = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
\tif (!e)
\t\treturn 0;
\te->tgid = tgid;
\te->ppid = BPF_CORE_READ(task, real_parent, tgid);
\tbpf_get_current_comm(e->comm, sizeof(e->comm));
\tbpf_ringbuf_submit(e, 0);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

EV_H = """\
#ifndef __EV_H
#define __EV_H
struct ev {
\tu32 tgid;
\tu32 ppid;
\tchar comm[TASK_COMM_LEN];
};
#endif
"""


@pytest.fixture
def service_env(lcc_service, monkeypatch, tmp_path):
    monkeypatch.setenv("LCC_TOKEN", lcc_service.token)
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path / "client-cache"))
    for var in ("LCC_SERVER", "LCC_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    return lcc_service.url


@pytest.fixture
def tool_dir(tmp_path) -> Path:
    d = tmp_path / "tool"
    d.mkdir()
    (d / "ev.h").write_text(EV_H)
    (d / "ppid.bpf.c").write_text(f"// {secrets.token_hex(8)}\n{EVENTS_C}")
    return d


def collect(tool: ClbcBase) -> list:
    got: list = []
    tool.maps["events"].open_ring_buffer(got.append)
    os.getppid()  # the trigger: our own syscall
    for _ in range(50):  # bounded wait for delivery, not a timing assertion
        if got:
            break
        tool.ring_buffer_poll(100)
    return got


def test_compile_load_and_event_through_the_service(service_env, tool_dir):
    with ClbcBase(str(tool_dir / "ppid.bpf.c"), server=service_env,
                  rodata={"targ_tgid": os.getpid()}) as tool:
        events = collect(tool)

    assert tool.artifact.origin == service_env and not tool.artifact.cache_hit
    assert len(events) == 1
    assert (events[0].tgid, events[0].ppid) == (os.getpid(), os.getppid())


def test_server_tailored_btf_replaces_the_kernels(service_env, tool_dir, hello_source):
    with ClbcBase(str(tool_dir / "ppid.bpf.c"), server=service_env, btf="server",
                  rodata={"targ_tgid": os.getpid()}) as tool:
        btf_path = tool.artifact.btf_path
        events = collect(tool)

    assert btf_path and os.path.getsize(btf_path) < os.path.getsize("/sys/kernel/btf/vmlinux")
    assert [(e.tgid, e.ppid) for e in events] == [(os.getpid(), os.getppid())]
    # Control: libbpf really reads the given BTF.  BTF tailored to another
    # program lacks task_struct, so the same object's CO-RE relocations fail.
    other = build(Bundle.from_string(hello_source, name="hello.bpf.c"), server=service_env,
                  btf=True)
    with pytest.raises(ProgramLoadError, match="CO-RE relocation"):
        ClbcBase("ppid", obj=tool.artifact.object, btf=other.btf_path,
                 rodata={"targ_tgid": os.getpid()}).close()


def test_second_start_is_a_client_cache_hit(service_env, tool_dir):
    with ClbcBase(str(tool_dir / "ppid.bpf.c"), server=service_env, btf="server",
                  rodata={"targ_tgid": os.getpid()}) as first:
        pass
    with ClbcBase(str(tool_dir / "ppid.bpf.c"), server=service_env, btf="server",
                  rodata={"targ_tgid": os.getpid()}) as second:
        events = collect(second)

    assert second.artifact.cache_hit and second.artifact.digest == first.artifact.digest
    assert second.artifact.btf_path == first.artifact.btf_path
    assert [(e.tgid, e.ppid) for e in events] == [(os.getpid(), os.getppid())]


@pytest.mark.parametrize("name", LOADABLE)
def test_runtime_test_programs_compile_through_the_service_and_load(service_env, name,
                                                                    tmp_path):
    bundle = Bundle.from_path(PROGS / f"{name}.bpf.c")
    store = ArtifactCache(tmp_path / "c")

    remote = build(bundle, server=service_env, cache=store)
    local = build(bundle, backend="local", cache=store)

    assert remote.digest == local.digest  # the same bytes either way
    with ClbcBase(name, obj=remote.object, attach=False) as tool:
        assert all(p.fd >= 0 for p in tool.obj.programs.values() if p.autoload)
