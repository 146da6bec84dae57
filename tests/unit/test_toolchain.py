"""Toolchain: real clang and bpftool (marker ``toolchain``), no privileges needed.

The precompiled header must never change a result: every case compiles the
same bundle with and without it and compares the bytes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from lcc_toolchain import landlock, objinfo, prune
from lcc_toolchain.errors import CompileFailed, ToolMissing
from lcc_toolchain.sandbox import Limits
from lcc_toolchain.toolchain import Toolchain, include_dir
from servertools import HELLO

HOST_BTF = Path("/sys/kernel/btf/vmlinux")
pytestmark = pytest.mark.toolchain


@dataclass
class B:
    main: str
    files: dict = field(default_factory=dict)


CONNECT_H = """\
#ifndef __CONNECT_H
#define __CONNECT_H
struct event {
\tu32 saddr, daddr;
\tu16 dport;
\tu64 delta_us;
\tu32 tgid;
\tchar comm[TASK_COMM_LEN];
};
#endif
"""

CONNECT_C = """\
// SPDX-License-Identifier: GPL-2.0
/* connect latency, CO-RE reads on struct sock */
#include "lbc.h"
#include "hdr/connect.h"

const volatile u64 min_us = 0;

struct start { u64 ts; u32 tgid; char comm[TASK_COMM_LEN]; };
LBC_HASH(start, struct sock *, struct start, 4096);
LBC_RINGBUF(events, struct event, 1 << 18);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
\tstruct start *s, init = {};
\tstruct event *e;
\tu64 now = bpf_ktime_get_ns();

\tif (newstate == TCP_SYN_SENT) {
\t\tinit.ts = now;
\t\tinit.tgid = bpf_get_current_pid_tgid() >> 32;
\t\tbpf_get_current_comm(init.comm, sizeof(init.comm));
\t\tbpf_map_update_elem(&start, &sk, &init, BPF_ANY);
\t\treturn 0;
\t}
\ts = bpf_map_lookup_elem(&start, &sk);
\tif (!s)
\t\treturn 0;
\tif ((now - s->ts) / 1000 >= min_us) {
\t\te = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
\t\tif (e) {
\t\t\te->saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
\t\t\te->daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
\t\t\te->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
\t\t\te->delta_us = (now - s->ts) / 1000;
\t\t\te->tgid = s->tgid;
\t\t\t__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
\t\t\tbpf_ringbuf_submit(e, 0);
\t\t}
\t}
\tbpf_map_delete_elem(&start, &sk);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def tc(tmp_path_factory):
    return Toolchain(work_dir=tmp_path_factory.mktemp("toolchain"))


def _both(tc, bundle, **kw):
    with_pch = tc.compile(bundle, **kw)
    plain = tc.compile(bundle, use_pch=False, **kw)
    return with_pch, plain


@pytest.mark.parametrize("bundle,defines", [
    (B("hello.bpf.c", {"hello.bpf.c": HELLO}), {}),
    (B("hello.bpf.c", {"hello.bpf.c": HELLO}), {"MY_KNOB": "3", "OTHER": None}),
    (B("connect.bpf.c", {"connect.bpf.c": CONNECT_C, "hdr/connect.h": CONNECT_H}), {}),
    (B("tools/connect.bpf.c", {"tools/connect.bpf.c": CONNECT_C.replace("hdr/", "../hdr/"),
                               "hdr/connect.h": CONNECT_H}), {}),
], ids=["hello", "hello-defines", "co-re-multi-file", "main-in-subdir"])
def test_pch_result_is_byte_identical_to_plain(tc, bundle, defines):
    with_pch, plain = _both(tc, bundle, defines=defines)

    assert with_pch.pch is True
    assert plain.pch is False
    assert with_pch.cut is plain.cut is True
    assert with_pch.object == plain.object
    assert with_pch.digest == plain.digest


@pytest.mark.parametrize("bundle,defines", [
    (B("hello.bpf.c", {"hello.bpf.c": HELLO}), {"PERF_MAX_STACK_DEPTH": "64"}),
    (B("hello.bpf.c", {"hello.bpf.c": "#define LBC_X 1\n" + HELLO}), {}),
    (B("hello.bpf.c", {"hello.bpf.c": HELLO, "vmlinux.h": '#include_next "vmlinux.h"\n'}), {}),
], ids=["define-used-by-lbc.h", "text-before-include", "bundle-shadows-vmlinux.h"])
def test_pch_is_skipped_when_it_could_differ(tc, bundle, defines):
    with_pch, plain = _both(tc, bundle, defines=defines)

    assert with_pch.pch is False
    assert with_pch.object == plain.object


def test_object_does_not_depend_on_work_dir(tc, tmp_path):
    other = Toolchain(work_dir=tmp_path / "elsewhere")
    bundle = B("hello.bpf.c", {"hello.bpf.c": HELLO})

    a, b = tc.compile(bundle), other.compile(bundle)

    assert a.digest == b.digest
    assert str(tc.work_dir).encode() not in a.object
    assert b"/lcc/include" in a.object  # lbc.h is named by its fixed virtual path


def test_object_does_not_depend_on_the_saved_index_or_how_clang_starts(tmp_path, monkeypatch):
    bundle = B("connect.bpf.c", {"connect.bpf.c": CONNECT_C, "hdr/connect.h": CONNECT_H})
    first = Toolchain(work_dir=tmp_path)  # indexes vmlinux.h in memory, saves the index
    built = first.compile(bundle)
    assert list(tmp_path.glob("vmlinux/*/vmlinux.h.index"))

    again = Toolchain(work_dir=tmp_path)  # a new process: reads the saved index
    from_saved = again.compile(bundle)
    monkeypatch.setattr(again.sandbox, "fork", False)  # the service's trampoline
    trampoline = again.compile(bundle)

    assert built.cut and from_saved.cut and trampoline.cut
    assert built.object == from_saved.object == trampoline.object


def test_a_one_off_compile_leaves_index_and_pch_to_the_next_process(tmp_path):
    bundle = B("connect.bpf.c", {"connect.bpf.c": CONNECT_C, "hdr/connect.h": CONNECT_H})
    first = Toolchain(work_dir=tmp_path, one_off=True)  # makes vmlinux.h
    made = first.compile(bundle)
    assert made.cut and not made.pch
    assert not list(tmp_path.glob("vmlinux/*/vmlinux.h.index"))
    assert not list(tmp_path.glob("pch/*/lbc.pch"))

    later = first.compile(bundle)  # vmlinux.h was there: the PCH is built
    nxt = Toolchain(work_dir=tmp_path, one_off=True).compile(bundle)  # and the index saved
    assert later.pch and nxt.pch and nxt.cut
    assert list(tmp_path.glob("vmlinux/*/vmlinux.h.index"))

    service = Toolchain(work_dir=tmp_path / "service").compile(bundle)
    assert made.object == later.object == nxt.object == service.object


def _garble_declaration(index_path: Path, key: str) -> None:
    """Make the saved index's entry for ``key`` ("struct sock") unreadable,
    leaving its tables intact (found only when a cut reads it)."""
    import json
    import sys
    data = index_path.read_bytes()
    n = int.from_bytes(data[8:12], sys.byteorder)
    head, start = json.loads(data[12:12 + n]), 12 + n
    index = prune.VmlinuxIndex.load(index_path.with_name("vmlinux.h"))
    i = index._by_key[key]
    bounds_at = start + head["sections"]["bounds"][0]
    meta = int.from_bytes(data[bounds_at + 4 * i:bounds_at + 4 * i + 4], sys.byteorder)
    at = start + head["sections"]["meta"][0] + meta
    index_path.write_bytes(data[:at] + b"@" + data[at + 1:])


def test_a_damaged_saved_index_does_not_change_the_object(tmp_path, caplog):
    bundle = B("connect.bpf.c", {"connect.bpf.c": CONNECT_C, "hdr/connect.h": CONNECT_H})
    want = Toolchain(work_dir=tmp_path).compile(bundle)
    (saved,) = tmp_path.glob("vmlinux/*/vmlinux.h.index")
    _garble_declaration(saved, "struct sock")  # not among lbc.h's own types

    got = Toolchain(work_dir=tmp_path).compile(bundle)

    assert "indexing vmlinux.h again" in caplog.text
    assert got.cut and got.object == want.object
    index = prune.VmlinuxIndex.load(saved.with_name("vmlinux.h"))  # saved again, readable
    assert "struct sock {" in index._decls[index._by_key["struct sock"]].text


def test_compile_error_has_bundle_relative_diagnostics(tc):
    bundle = B("bad.bpf.c", {"bad.bpf.c": '#include "lbc.h"\n#include "inc/bad.h"\n',
                             "inc/bad.h": "int f(void) { return nope; }\n"})
    with pytest.raises(CompileFailed) as err:
        tc.compile(bundle)

    first = err.value.diagnostics[0]
    assert (first.file, first.line, first.severity) == ("inc/bad.h", 1, "error")
    assert "nope" in first.message
    assert str(tc.work_dir) not in err.value.log
    assert "inc/bad.h:1:" in str(err.value)


def test_error_inside_lbc_h_is_named_lbc_h(tc):
    with pytest.raises(CompileFailed) as err:
        tc.compile(B("x.bpf.c", {"x.bpf.c": "#define lbc_log2 123\n#include \"lbc.h\"\n"}))
    files = {d.file for d in err.value.diagnostics}
    assert "lbc.h" in files
    assert not any(f.startswith("/") for f in files)


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_compiler_cannot_read_outside_its_roots(tc):
    with pytest.raises(CompileFailed) as err:
        tc.compile(B("x.bpf.c", {"x.bpf.c": '#include "/etc/passwd"\n'}))
    assert err.value.diagnostics[0].message == "'/etc/passwd' file not found"
    assert "root:" not in err.value.log


def test_cpu_limit_stops_a_macro_bomb(tmp_path):
    tight = Toolchain(work_dir=tmp_path, limits=Limits(cpu_seconds=1, wall_seconds=20), pch=False)
    bomb = ("#define A0 x x x x\n"
            + "".join(f"#define A{i} A{i - 1} A{i - 1} A{i - 1} A{i - 1}\n" for i in range(1, 16))
            + "int y = A15;\n")
    with pytest.raises(CompileFailed) as err:
        tight.compile(B("x.bpf.c", {"x.bpf.c": bomb}))
    assert "CPU time limit" in str(err.value)


def test_min_core_btf_is_small_valid_btf(tc):
    obj = tc.compile(B("connect.bpf.c", {"connect.bpf.c": CONNECT_C,
                                         "hdr/connect.h": CONNECT_H})).object
    btf = tc.min_core_btf(obj, HOST_BTF)

    assert btf[:2] == b"\x9f\xeb"
    assert 24 < len(btf) < HOST_BTF.stat().st_size // 10


def test_vmlinux_h_is_generated_once(tc):
    first = tc.vmlinux_h(HOST_BTF)
    mtime = first.stat().st_mtime_ns
    again = tc.vmlinux_h(HOST_BTF)

    assert first == again and again.stat().st_mtime_ns == mtime
    assert first.parent.name.startswith(tc.btf_sha256(HOST_BTF))
    text = first.read_text()
    assert "struct task_struct {" in text
    # the kfunc declarations bpftool 7.1 does not write, before the closing lines
    assert "#ifndef BPF_NO_KFUNC_PROTOTYPES" in text
    decl = "extern struct task_struct *bpf_task_from_pid(s32 pid) __weak __ksym;"
    assert decl in text and text.index(decl) < text.index("#pragma clang attribute pop")


def test_identity_is_stable_and_complete(tc):
    ident = tc.identity()
    assert ident == tc.identity()
    assert set(ident) == {"clang", "bpftool", "lbc_h", "libbpf_h", "flags"}
    assert "clang" in ident["clang"] and "/" not in ident["bpftool"]


def test_include_dir_holds_lbc_h():
    assert (include_dir() / "lbc.h").is_file()


def test_missing_clang_is_tool_missing(tmp_path):
    with pytest.raises(ToolMissing):
        Toolchain(clang="no-such-clang-lcc", work_dir=tmp_path).compile(
            B("x.bpf.c", {"x.bpf.c": HELLO}))


def test_a_refused_pch_falls_back_and_is_rebuilt(tmp_path):
    tc = Toolchain(work_dir=tmp_path)
    bundle = B("hello.bpf.c", {"hello.bpf.c": HELLO})
    assert tc.prepare(HOST_BTF)
    good = tc.compile(bundle)
    pch_files = list((tmp_path / "pch").glob("*/lbc.pch"))
    assert len(pch_files) == 2  # lbc.h over the cut vmlinux.h, and over the whole one
    for pch_file in pch_files:
        pch_file.write_bytes(b"not a precompiled header")

    fallback = tc.compile(bundle)
    rebuilt = tc.compile(bundle)

    assert (good.pch, fallback.pch, rebuilt.pch) == (True, False, True)
    assert good.cut and fallback.cut and rebuilt.cut
    assert good.object == fallback.object == rebuilt.object


# -- vmlinux.h cut down to the program's types --------------------------------

CONNECT = B("connect.bpf.c", {"connect.bpf.c": CONNECT_C, "hdr/connect.h": CONNECT_H})


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return Toolchain(work_dir=tmp_path_factory.mktemp("whole"), cut=False)


def _code_sections(obj: bytes) -> dict[str, bytes]:
    elf = ELFFile(io.BytesIO(obj))
    return {s.name: s.data() for s in elf.iter_sections()
            if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR}


def test_cut_object_has_the_same_code_maps_and_programs(tc, whole):
    cut, full = tc.compile(CONNECT), whole.compile(CONNECT)

    assert cut.cut is True and full.cut is False
    assert _code_sections(cut.object) == _code_sections(full.object)
    assert objinfo.summarize(cut.object) == objinfo.summarize(full.object)
    assert len(cut.object) * 4 < len(full.object)  # struct sock's type graph is gone


def test_bundle_that_pastes_tokens_compiles_against_the_whole_header(tc, whole):
    text = CONNECT_C.replace("#include \"lbc.h\"\n",
                             "#include \"lbc.h\"\n#define RAW(n) trace_event_raw_##n\n")
    bundle = B("connect.bpf.c", {"connect.bpf.c": text, "hdr/connect.h": CONNECT_H})

    got = tc.compile(bundle)

    assert got.cut is False and got.pch is True
    assert got.object == whole.compile(bundle).object


def test_failed_cut_falls_back_to_the_whole_header(tc, whole, monkeypatch):
    # A cut that leaves out struct sock: the compile must still succeed, as if
    # there were no cut at all.
    monkeypatch.setattr(prune.Cutter, "extra_header", lambda self, names: "\n")

    got = tc.compile(CONNECT)

    assert got.cut is False
    assert got.object == whole.compile(CONNECT).object


def test_error_in_the_program_is_reported_from_the_whole_header(tc, whole):
    bundle = B("bad.bpf.c", {"bad.bpf.c": '#include "lbc.h"\nint f(struct sock *sk) '
                                         '{ return sk->no_such_member; }\n'})

    with pytest.raises(CompileFailed) as cut_err:
        tc.compile(bundle)
    with pytest.raises(CompileFailed) as whole_err:
        whole.compile(bundle)

    assert cut_err.value.diagnostics == whole_err.value.diagnostics
    assert "no_such_member" in cut_err.value.diagnostics[0].message


def test_define_values_are_scanned_for_type_names(tc):
    # sk->sk_socket->state needs struct socket complete; only the -D value
    # names the member that leads there.
    text = ('#include "lbc.h"\nSEC("tp_btf/inet_sock_set_state")\n'
            'int BPF_PROG(f, struct sock *sk) { return BPF_CORE_READ(sk, VIA, state); }\n'
            'char LICENSE[] SEC("license") = "GPL";\n')

    got = tc.compile(B("d.bpf.c", {"d.bpf.c": text}), defines={"VIA": "sk_socket"})

    assert got.cut is True


# -- tools as an unprivileged user ------------------------------------------------


@pytest.fixture
def open_dir():
    """A directory that others may search, as a service's state directory is."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="lcc-test-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_compiles_with_tools_as_nobody(open_dir):
    from lcc_toolchain.sandbox import Sandbox
    tc = Toolchain(work_dir=open_dir / "work", sandbox=Sandbox(user=(65534, 65534)))
    bundle = B("hello.bpf.c", {"hello.bpf.c": HELLO})

    with_pch, plain = _both(tc, bundle)

    assert tc.sandbox.user == (65534, 65534)
    assert with_pch.object == plain.object and with_pch.pch
    # bpftool wrote vmlinux.h, clang the PCH: both as nobody
    (vmdir,) = (open_dir / "work" / "vmlinux").iterdir()
    assert vmdir.stat().st_uid == 65534
    assert all(p.stat().st_uid == 65534 for p in (open_dir / "work" / "pch").iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_tools_stay_root_when_the_work_dir_is_closed(tmp_path, caplog):
    from lcc_toolchain.sandbox import Sandbox
    tmp_path.chmod(0o700)
    with caplog.at_level("WARNING", logger="lcc_toolchain.toolchain"):
        tc = Toolchain(work_dir=tmp_path / "work", sandbox=Sandbox(user=(65534, 65534)))
    assert tc.sandbox.user is None
    assert "not searchable by others" in caplog.text


# -- no path-existence oracle -----------------------------------------------------


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
@pytest.mark.parametrize("template", ['#include "{}"\n', "#include <{}>\n",
                                      'int x;\n#include "{}"\n'])
def test_forbidden_and_missing_files_get_the_same_answer(tc, template):
    answers = []
    for path in ("/etc/passwd", "/etc/passwq", "/dev/zero", "/dev/zerq"):
        with pytest.raises(CompileFailed) as exc:
            tc.compile(B("x.bpf.c", {"x.bpf.c": template.format(path)}))
        err = exc.value
        answers.append((err.log.replace(path, "P"),
                        [(d.line, d.column, d.message.replace(path, "P"))
                         for d in err.diagnostics]))
    assert answers[0] == answers[1] == answers[2] == answers[3]
    assert "file not found" in answers[0][0] and "denied" not in answers[0][0]


@pytest.mark.skipif(os.geteuid() != 0, reason="a private root needs root")
def test_has_include_does_not_tell_whether_a_host_file_exists(open_dir):
    from lcc_toolchain.sandbox import Sandbox
    tc = Toolchain(work_dir=open_dir / "work", sandbox=Sandbox(user=(65534, 65534)), pch=False)
    answers = []
    for path in ("/etc/shadow", "/etc/shadoq", "../../../../../../etc/passwd", "/dev/zero"):
        src = f'#if __has_include("{path}")\n#error found\n#else\n#error absent\n#endif\n'
        with pytest.raises(CompileFailed) as exc:
            tc.compile(B("x.bpf.c", {"x.bpf.c": src}))
        answers.append([d.message for d in exc.value.diagnostics])
    assert answers == [["absent"]] * 4


# -- a damaged work directory heals ----------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "delete", "edit"])
def test_damaged_vmlinux_h_is_made_again(tmp_path, damage):
    tc = Toolchain(work_dir=tmp_path, pch=False)
    bundle = B("x.bpf.c", {"x.bpf.c": HELLO})
    first = tc.compile(bundle)
    header = tc.vmlinux_h()
    if damage == "truncate":
        header.write_bytes(b"")
    elif damage == "delete":
        header.unlink()
    else:
        header.write_text(header.read_text().replace("struct task_struct {", "struct x {", 1))

    again = Toolchain(work_dir=tmp_path, pch=False).compile(bundle)
    assert again.object == first.object
    assert tc.compile(bundle).object == first.object  # the running instance heals too
    assert header.stat().st_size > 1000


def test_leftover_request_directories_are_removed_at_start(tmp_path):
    old = tmp_path / "tmp" / "c-dead"
    fresh = tmp_path / "tmp" / "c-live"
    for d in (old, fresh):
        (d / "src").mkdir(parents=True)
    os.utime(old, (0, 0))

    Toolchain(work_dir=tmp_path)

    assert not old.exists() and fresh.exists()
