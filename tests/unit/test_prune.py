"""Cutting vmlinux.h down to a program's types (lcc_toolchain.prune), on a small
header laid out as bpftool writes it.  No clang needed."""

from __future__ import annotations

import json
import re
import sys

import pytest

from lcc_toolchain.prune import (Cutter, CutterCache, FixedHeaders, VmlinuxIndex, identifiers,
                                  usable)

VMLINUX_H = """\
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

typedef unsigned int __u32;

typedef __u32 u32;

struct file;

struct list_head {
\tstruct list_head *next;
\tstruct list_head *prev;
};

struct socket {
\tint state;
\tstruct file *file;
};

struct page {
\tlong unsigned int flags;
};

typedef struct page *pgtable_t;

struct net {
\tstruct list_head list;
\tu32 ifindex;
};

enum {
\tTCP_ESTABLISHED = 1,
\tTCP_SYN_SENT = 2,
};

enum sk_kind {
\tSK_A = 0,
};

struct sock_common {
\tu32 skc_daddr;
\tstruct net *skc_net;
\tenum sk_kind skc_kind;
};

struct sock {
\tstruct sock_common __sk_common;
\tstruct socket *sk_socket;
\tpgtable_t sk_page;
\tvoid (*sk_data_ready)(struct sock *, struct file *);
};

struct pt_regs {
\tlong unsigned int di;
};

typedef void (*work_func_t)(struct work_struct *);

struct work_struct {
\twork_func_t func;
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""


@pytest.fixture(scope="module")
def index():
    return VmlinuxIndex(VMLINUX_H)


def kept(index, names, header_names=(), header_records=()):
    """First lines of the declarations kept, e.g. {"struct sock {", "typedef __u32 u32;"}
    (forward declarations and preprocessor lines left out)."""
    text = index.render(index.keep(names, header_names, header_records))
    return {chunk.split("\n", 1)[0] for chunk in text.split("\n\n")
            if chunk.strip() and not chunk.startswith("#")
            and not re.fullmatch(r"(struct|union) \w+;", chunk.strip())}


def test_named_struct_keeps_what_it_holds_by_value(index):
    got = kept(index, {"sock"})

    assert "struct sock {" in got
    assert "struct sock_common {" in got           # member by value
    assert "typedef __u32 u32;" in got             # typedef used by a kept member
    assert "typedef unsigned int __u32;" in got
    assert "enum sk_kind {" in got                 # enum by value
    assert "typedef struct page *pgtable_t;" in got
    # behind pointers only: forward-declared, not kept
    assert "struct socket {" not in got
    assert "struct net {" not in got
    assert "struct page {" not in got


def test_pointees_are_forward_declared_before_use(index):
    text = index.render(index.keep({"sock"}))

    for fwd in ("struct socket;", "struct net;", "struct file;", "struct sock;"):
        assert fwd in text.split("\n\n")
    assert text.index("struct socket;") < text.index("struct sock {")


def test_named_member_keeps_what_it_points_to(index):
    got = kept(index, {"sock", "sk_socket", "skc_net"})

    assert "struct socket {" in got
    assert "struct net {" in got
    assert "struct list_head {" in got              # by value inside struct net
    assert "struct file {" not in got               # socket.file is not named


def test_named_member_of_pointer_typedef_keeps_the_pointee(index):
    assert "struct page {" in kept(index, {"sock", "sk_page"})


def test_enumerator_keeps_its_anonymous_enum(index):
    got = kept(index, {"TCP_SYN_SENT"})

    assert got == {"enum {"}


def test_fixed_header_names_keep_typedefs_and_enums_not_records(index):
    got = kept(index, (), header_names={"u32", "TCP_ESTABLISHED", "sock", "sk_kind"})

    assert "typedef __u32 u32;" in got
    assert "enum {" in got
    assert "enum sk_kind {" in got
    assert "struct sock {" not in got   # helpers only take pointers to it


def test_records_dereferenced_by_fixed_header_macros_are_kept(index):
    records = index.record_keys("#define PT_REGS_PARM1(x) (((const struct pt_regs *)(x))->di)")

    assert records == {"struct pt_regs"}
    assert "struct pt_regs {" in kept(index, (), header_records=records)


def test_function_pointer_parameters_are_forward_declared(index):
    text = index.render(index.keep({"work_func_t"}))

    assert "struct work_struct;" in text
    assert text.index("struct work_struct;") < text.index("typedef void (*work_func_t)")
    assert "struct work_struct {" not in text


def test_kept_declarations_stay_in_original_order(index):
    text = index.render(index.keep({"sock", "sk_socket"}))

    assert text.index("struct socket {") < text.index("struct sock_common {") \
        < text.index("struct sock {")
    assert text.startswith("#ifndef __VMLINUX_H__")
    assert text.rstrip().endswith("#endif /* __VMLINUX_H__ */")


def test_cutter_splits_base_and_program_types(index):
    fixed = FixedHeaders(files=frozenset({"lbc.h", "vmlinux.h"}), names=frozenset({"u32"}),
                         macro_text="#define R(x) ((struct pt_regs *)(x))->di")
    cutter = Cutter(index, fixed)

    base = cutter.base_header()
    extra = cutter.extra_header({"sock"})

    assert "typedef __u32 u32;" in base and "struct pt_regs {" in base
    assert "struct sock {" not in base
    assert "struct sock {" in extra
    assert "typedef __u32 u32;" not in extra       # already in the base
    assert "__VMLINUX_H__" not in extra            # no include guard: it follows lbc.h
    assert "#pragma clang attribute push" in extra  # still CO-RE relocatable


def test_every_identifier_of_the_header_is_known(index):
    assert {"sock", "skc_daddr", "TCP_SYN_SENT", "pgtable_t", "di"} <= index.identifiers


def test_header_not_laid_out_by_bpftool_is_refused():
    with pytest.raises(ValueError, match="preprocessor"):
        VmlinuxIndex("struct a {\n\tint x;\n};\n\n#define X 1\n\nstruct b {\n\tint y;\n};\n")


def test_token_pasting_bundle_is_not_usable():
    assert usable({"a.bpf.c": "int x;", "b.h": "#define T(n) struct n"})
    assert not usable({"a.bpf.c": "int x;", "b.h": "#define T(n) struct trace_event_raw_##n"})


def test_identifiers_include_comments_and_strings():
    assert identifiers('/* sk_socket */ x = "task_struct";') >= {"sk_socket", "task_struct", "x"}


def test_fixed_headers_follow_includes_but_not_vmlinux_h(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "lib" / "bpf").mkdir(parents=True)
    (tmp_path / "inc" / "lbc.h").write_text(
        '#include "vmlinux.h"\n#include <bpf/helpers.h>\ntypedef __u32 my_u32;\n')
    (tmp_path / "lib" / "bpf" / "helpers.h").write_text(
        '#include "defs.h"\n#define CAST(x) ((struct pt_regs *)(x))\n')
    (tmp_path / "lib" / "bpf" / "defs.h").write_text("static long (*f)(struct sock *);\n")
    (tmp_path / "inc" / "vmlinux.h").write_text("struct never_read { int x; };\n")

    fixed = FixedHeaders.scan(tmp_path / "inc" / "lbc.h", [tmp_path / "inc", tmp_path / "lib"])

    assert fixed.files == {"lbc.h", "helpers.h", "defs.h", "vmlinux.h"}
    assert {"my_u32", "sock", "pt_regs"} <= fixed.names
    assert "never_read" not in fixed.names
    assert "struct pt_regs" in fixed.macro_text and "struct sock" not in fixed.macro_text


def test_index_is_saved_next_to_vmlinux_h_and_reused(tmp_path, index):
    path = tmp_path / "vmlinux.h"
    path.write_text(VMLINUX_H)
    saved = tmp_path / "vmlinux.h.index"

    first = VmlinuxIndex.load(path)
    again = VmlinuxIndex.load(path)

    assert saved.is_file()
    want = index.render(index.keep({"sock", "sk_socket"}))
    assert first.render(first.keep({"sock", "sk_socket"})) == want
    assert again.render(again.keep({"sock", "sk_socket"})) == want
    assert again.identifiers == index.identifiers


def test_an_index_not_saved_cuts_the_same_reading_only_what_it_needs(tmp_path, index):
    path = tmp_path / "vmlinux.h"
    path.write_text(VMLINUX_H)

    unsaved = VmlinuxIndex.load(path, save=False)
    assert not (tmp_path / "vmlinux.h.index").exists()
    cut = unsaved.render(unsaved.keep({"u32"}))
    scanned = sum(d is not None for d in unsaved._decls._done)
    assert 0 < scanned < len(unsaved._decls)

    saved = VmlinuxIndex.load(path)
    for names in ({"u32"}, {"sock", "sk_socket"}, {"sk_state", "task_struct"}):
        assert unsaved.render(unsaved.keep(names)) == saved.render(saved.keep(names)) \
            == index.render(index.keep(names))
    assert cut == index.render(index.keep({"u32"}))
    assert unsaved.identifiers == saved.identifiers


def _saved_index(tmp_path) -> bytes:
    path = tmp_path / "vmlinux.h"
    path.write_text(VMLINUX_H)
    VmlinuxIndex.load(path)
    return (tmp_path / "vmlinux.h.index").read_bytes()


def _header(data: bytes) -> tuple[int, dict]:
    """(where the sections start, the JSON header) of a saved index."""
    n = int.from_bytes(data[8:12], sys.byteorder)
    return 12 + n, json.loads(data[12:12 + n])


def _with_header(data: bytes, head: dict) -> bytes:
    start, _ = _header(data)
    raw = json.dumps(head).encode()
    return data[:8] + len(raw).to_bytes(4, sys.byteorder) + raw + data[start:]


def _stale(data: bytes) -> bytes:
    _, head = _header(data)
    return _with_header(data, {**head, "sha256": "0" * 64})  # made from other text


def _past_the_end(data: bytes) -> bytes:
    # the first key ("struct ...") now names declaration 10000 of a few dozen
    start, head = _header(data)
    off, _ = head["sections"]["key_index"]
    at = start + off
    return data[:at] + (10_000).to_bytes(4, sys.byteorder) + data[at + 4:]


def _cut_short(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _declaration_garbled(data: bytes) -> bytes:
    # what the first declaration refers to is no longer JSON
    start, head = _header(data)
    off, _ = head["sections"]["meta"]
    return data[:start + off] + b"@" + data[start + off + 1:]


@pytest.mark.parametrize("damage", [
    lambda data: b"not an index",
    _stale, _past_the_end, _cut_short,
], ids=["garbage", "stale", "past-the-end", "truncated"])
def test_damaged_or_stale_index_is_rebuilt(tmp_path, index, damage):
    good = _saved_index(tmp_path)
    saved = tmp_path / "vmlinux.h.index"
    saved.write_bytes(damage(good))

    got = VmlinuxIndex.load(tmp_path / "vmlinux.h")

    assert got.render(got.keep({"sock"})) == index.render(index.keep({"sock"}))
    assert saved.read_bytes() == good  # saved again, as it was


def test_damaged_declaration_is_a_value_error_when_used(tmp_path):
    saved = tmp_path / "vmlinux.h.index"
    saved.write_bytes(_declaration_garbled(_saved_index(tmp_path)))

    got = VmlinuxIndex.load(tmp_path / "vmlinux.h")  # the tables are intact

    with pytest.raises(ValueError, match="declaration 0 is damaged"):
        got.render(range(len(got._decls)))


def test_cutter_cache_indexes_again_past_a_damaged_declaration(tmp_path, index):
    good = _saved_index(tmp_path)
    (tmp_path / "vmlinux.h.index").write_bytes(_declaration_garbled(good))
    fixed = FixedHeaders(files=frozenset({"lbc.h"}), names=frozenset({"u32"}), macro_text="")

    cutter = CutterCache().get(tmp_path / "vmlinux.h", fixed)

    assert cutter.extra_header({"sock"}) == Cutter(index, fixed).extra_header({"sock"})
    assert (tmp_path / "vmlinux.h.index").read_bytes() == good  # saved again


def test_forget_drops_the_saved_index(tmp_path):
    _saved_index(tmp_path)
    cache = CutterCache()
    fixed = FixedHeaders(files=frozenset({"lbc.h"}), names=frozenset(), macro_text="")
    first = cache.get(tmp_path / "vmlinux.h", fixed)

    cache.forget(tmp_path / "vmlinux.h")

    assert not (tmp_path / "vmlinux.h.index").exists()
    assert cache.get(tmp_path / "vmlinux.h", fixed) is not first


def test_saved_index_reads_only_what_a_cut_uses(tmp_path, index):
    _saved_index(tmp_path)

    got = VmlinuxIndex.load(tmp_path / "vmlinux.h")
    got.render(got.keep({"u32"}))

    assert got._identifiers is None  # the whole header's identifiers stay unread
    decoded = [i for i, d in enumerate(got._decls._cache) if d is not None]
    assert 0 < len(decoded) < len(got._decls)


def test_json_index_of_earlier_releases_is_removed(tmp_path):
    (tmp_path / "vmlinux.h.index.json").write_text("{}")

    _saved_index(tmp_path)

    assert not (tmp_path / "vmlinux.h.index.json").exists()


def test_fixed_headers_follow_include_next_to_the_system_header(tmp_path):
    # lcc's bpf/ headers complete libbpf's: the same name, found further on
    (tmp_path / "inc" / "bpf").mkdir(parents=True)
    (tmp_path / "lib" / "bpf").mkdir(parents=True)
    (tmp_path / "inc" / "lbc.h").write_text("#include <bpf/helpers.h>\n")
    (tmp_path / "inc" / "bpf" / "helpers.h").write_text(
        "#include_next <bpf/helpers.h>\n#define COMPAT(x) ((struct compat_rec *)(x))\n")
    (tmp_path / "lib" / "bpf" / "helpers.h").write_text("typedef __u64 libbpf_type;\n")

    fixed = FixedHeaders.scan(tmp_path / "inc" / "lbc.h", [tmp_path / "inc", tmp_path / "lib"])

    assert {"libbpf_type", "compat_rec"} <= fixed.names
    assert "struct compat_rec" in fixed.macro_text


KFUNCS = """\
#ifndef BPF_NO_KFUNC_PROTOTYPES
#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif
#ifndef __weak
#define __weak __attribute__((weak))
#endif

extern struct sock *bpf_sock_lookup(u32 id, struct net *net) __weak __ksym;

extern void bpf_work_run(struct work_struct *w) __weak __ksym;

#endif /* BPF_NO_KFUNC_PROTOTYPES */"""


@pytest.fixture(scope="module")
def kindex():
    head, tail = VMLINUX_H.split("\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang "
                                 "attribute pop")
    return VmlinuxIndex(f"{head}\n\n{KFUNCS}\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
                        f"#pragma clang attribute pop{tail}")


def test_kfunc_declarations_are_kept_only_when_named(kindex):
    assert not any(line.startswith("extern") for line in kept(kindex, {"sock"}))
    text = kindex.render(kindex.keep({"bpf_sock_lookup"}))

    assert "extern struct sock *bpf_sock_lookup(u32 id, struct net *net) __weak __ksym;" in text
    assert "bpf_work_run" not in text
    # in their guarded block, after the types they use, before the closing lines
    assert text.index("typedef __u32 u32;") < text.index("#ifndef BPF_NO_KFUNC_PROTOTYPES")
    assert text.index("struct net;") < text.index("bpf_sock_lookup")
    assert text.index("#endif /* BPF_NO_KFUNC_PROTOTYPES */") < \
        text.index("#pragma clang attribute pop")


def test_kfunc_block_survives_the_saved_index(tmp_path, kindex):
    path = tmp_path / "vmlinux.h"
    path.write_text(kindex.render(range(len(kindex._decls))))
    VmlinuxIndex.load(path)
    again = VmlinuxIndex.load(path)  # from the saved index this time

    want = kindex.render(kindex.keep({"bpf_work_run"}))
    assert again.render(again.keep({"bpf_work_run"})) == want
    assert "extern void bpf_work_run(struct work_struct *w) __weak __ksym;" in want


def test_text_in_the_kfunc_block_that_is_no_declaration_is_refused():
    with pytest.raises(ValueError, match="kfunc block"):
        VmlinuxIndex("typedef int x;\n\n#ifndef BPF_NO_KFUNC_PROTOTYPES\n\nint y;\n\n"
                     "#endif /* BPF_NO_KFUNC_PROTOTYPES */\n")
