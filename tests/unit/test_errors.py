"""The error hierarchy: classes, messages, errno mapping and pickling."""

from __future__ import annotations

import errno
import pickle

import pytest

from lcc.errors import (AttachPointMissing, BpfError, BpfPermissionError, BtfError, ClosedError,
                        CompileError, Diagnostic, KeyNotFound, LccError, NotSupported,
                        ProgramLoadError, ToolchainMissing, from_errno, strerror)


@pytest.mark.parametrize("err, cls", [
    (errno.EPERM, BpfPermissionError),
    (errno.EACCES, BpfPermissionError),
    (errno.EOPNOTSUPP, NotSupported),
    (524, NotSupported),  # the kernel's ENOTSUPP
    (errno.ENOENT, BpfError),
    (errno.EINVAL, BpfError),
    (errno.E2BIG, BpfError),
])
def test_from_errno_picks_the_subclass(err, cls):
    for signed in (err, -err):
        e = from_errno(signed, "doing a thing")
        assert type(e) is cls
        assert e.errno == err and e.what == "doing a thing"


def test_builtin_bases():
    assert issubclass(BpfError, OSError) and issubclass(BpfError, LccError)
    assert issubclass(KeyNotFound, KeyError) and issubclass(KeyNotFound, BpfError)
    assert issubclass(BpfPermissionError, PermissionError)
    assert issubclass(ClosedError, ValueError)
    assert issubclass(AttachPointMissing, NotSupported)
    assert issubclass(ProgramLoadError, BpfError) and not issubclass(ProgramLoadError,
                                                                     PermissionError)
    for cls in (CompileError, ToolchainMissing, BtfError):
        assert issubclass(cls, LccError) and not issubclass(cls, OSError)


def test_messages_are_one_sentence_with_the_hint():
    e = from_errno(errno.EINVAL, "map update", hint="check the key size")
    assert str(e) == "map update failed: Invalid argument (check the key size)"
    assert e.strerror == "Invalid argument"
    p = from_errno(errno.EPERM, "loading")
    assert str(p).startswith("loading failed: Operation not permitted (run as root")
    assert "CAP_BPF" in p.hint
    n = from_errno(errno.EOPNOTSUPP, "ring buffers")
    assert str(n) == "ring buffers is not supported by this kernel" and n.feature == "ring buffers"


def test_libbpf_error_numbers_have_text():
    assert strerror(4001) == "not a valid BPF object file (bad ELF or BTF format)"
    assert strerror(-4007).startswith("the kernel verifier")
    assert strerror(errno.ENOENT) == "No such file or directory"
    assert "Unknown error" not in str(from_errno(-4003, "opening"))


def test_key_not_found():
    e = KeyNotFound(42, "counts")
    assert str(e) == "key 42 not found in map 'counts'"
    assert e.key == 42 and e.map_name == "counts" and e.errno == errno.ENOENT
    assert str(KeyNotFound(None, "q", message="map 'q' is empty")) == "map 'q' is empty"
    with pytest.raises(KeyError):
        raise e


def test_program_load_error_names_the_verifier_line():
    log = ("0: R1=ctx() R10=fp0\n5: (79) r0 = *(u64 *)(r0 +0)\n"
           "R0 invalid mem access 'scalar'\n"
           "verification time 12 usec\nstack depth 8\n"
           "processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0\n")
    e = ProgramLoadError(errno.EACCES, "prog", log)
    assert str(e) == "program 'prog' was rejected by the verifier: R0 invalid mem access 'scalar'"
    assert e.verifier_log == log and e.program == "prog" and e.source is None
    bare = ProgramLoadError(errno.EPERM, "prog", "", hint="use a tracepoint")
    assert str(bare) == ("program 'prog' could not be loaded: Operation not permitted\n"
                         "  hint: use a tracepoint")


_ANNOTATED = """\
; int prog(void *ctx) @ tool.bpf.c:12
0: (b7) r1 = 0                        ; R1=0
;  @ tool.bpf.c:0
3: (07) r2 += -4                      ; R2=fp-4
; v->slots[idx] += 1; @ tool.bpf.c:17
14: (79) r1 = *(u64 *)(r0 +0)
{last}
processed 14 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1
"""


def test_program_load_error_shows_the_source_line_and_a_hint():
    log = _ANNOTATED.format(last="R0 unbounded memory access, make sure to bounds check any "
                                 "such access")
    e = ProgramLoadError(errno.EACCES, "prog", log)
    assert e.source == ("tool.bpf.c", 17, "v->slots[idx] += 1;")
    assert str(e) == (
        "program 'prog' was rejected by the verifier: R0 unbounded memory access, make sure "
        "to bounds check any such access\n"
        "  at tool.bpf.c:17: v->slots[idx] += 1;\n"
        "  hint: bound the index or offset before using it (if (i >= N) return 0; or "
        "i & (N - 1)) so the verifier can prove every access stays inside the value")
    assert e.message.splitlines() == [e.message]  # the first line alone, for one-line uses


@pytest.mark.parametrize("last, words", [
    ("R0 invalid mem access 'map_value_or_null'", "may be NULL"),
    ("R1 min value is negative, either use unsigned index or do a if (index >=0) check.",
     "bound the index"),
    ("R2 max value is outside of the allowed memory range", "bound the index"),
    ("BPF program is too large. Processed 1000001 insn", "too many instructions"),
    ("cannot call GPL-restricted function from non-GPL compatible program", "GPL-only"),
    ("unknown func bpf_probe_read_kernel#113", "may not call that helper"),
    ("program of this type cannot use helper bpf_probe_read#4", "may not call that helper"),
])
def test_verifier_hints_for_common_rejections(last, words):
    e = ProgramLoadError(errno.EACCES, "prog", _ANNOTATED.format(last=last))
    assert words in e.hint and str(e).endswith(e.hint)


def test_verifier_source_needs_a_line_with_text():
    from lcc.errors import verifier_source
    assert verifier_source(";  @ a.bpf.c:0\nR0 bad") is None
    assert verifier_source("") is None


def test_attach_point_missing():
    e = AttachPointMissing("tracepoint", "a/b", "tracepoint a/b does not exist")
    assert (e.kind, e.target, e.feature, e.errno) == ("tracepoint", "a/b", "tracepoint",
                                                      errno.ENOENT)


@pytest.mark.parametrize("exc", [
    from_errno(errno.EPERM, "loading", hint="h"),
    KeyNotFound(7, "m"),
    ProgramLoadError(errno.EACCES, "p", "R0 bad\n"),
    AttachPointMissing("kprobe", "f", "no f", hint="h"),
    NotSupported("ringbuf", "no ring buffers"),
])
def test_pickle_round_trip(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc) and back.errno == exc.errno
    assert back.__dict__ == exc.__dict__


def test_compile_error_and_diagnostics():
    d = Diagnostic("x.bpf.c", 3, 5, "error", "use of undeclared identifier 'y'")
    e = CompileError("clang could not compile the program", [d], log="...")
    assert e.message == ("clang could not compile the program: x.bpf.c:3:5: error: "
                         "use of undeclared identifier 'y'")
    assert str(e) == ("clang could not compile the program (1 error):\n"
                      "x.bpf.c:3:5: error: use of undeclared identifier 'y'")
    assert Diagnostic.from_dict(d.to_dict()) == d
    assert ToolchainMissing("no clang").hint


def test_compile_error_draws_each_diagnostic_with_a_caret():
    src = "int a = ;\n\tint b = y;\n"
    diags = [Diagnostic("x.bpf.c", 1, 9, "error", "expected expression"),
             Diagnostic("x.bpf.c", 2, 10, "error", "use of undeclared identifier 'y'"),
             Diagnostic("x.bpf.c", 2, 6, "note", "declared here"),
             Diagnostic("lbc.h", 40, 1, "warning", "in a header not in the bundle")]
    e = CompileError("clang could not compile the program: x.bpf.c:1:9: error: "
                     "expected expression", diags, sources={"x.bpf.c": src})
    assert str(e) == (
        "clang could not compile the program (2 errors):\n"
        "x.bpf.c:1:9: error: expected expression\n"
        "    1 | int a = ;\n"
        "      |         ^\n"
        "x.bpf.c:2:10: error: use of undeclared identifier 'y'\n"
        "    2 | \tint b = y;\n"
        "      | \t        ^\n"
        "x.bpf.c:2:6: note: declared here\n"
        "    2 | \tint b = y;\n"
        "      | \t    ^\n"
        "lbc.h:40:1: warning: in a header not in the bundle")


def test_compile_error_shows_at_most_ten_diagnostics():
    diags = [Diagnostic("x.bpf.c", i, 1, "error", f"e{i}") for i in range(1, 14)]
    text = str(CompileError("clang could not compile the program", diags))
    assert text.splitlines()[0] == "clang could not compile the program (13 errors):"
    assert text.splitlines()[1:] == [f"x.bpf.c:{i}:1: error: e{i}" for i in range(1, 11)] + [
        "... and 3 more diagnostics (.log has them all)"]


def test_compile_warning_is_a_user_warning_with_its_source_line():
    from lcc import CompileWarning
    d = Diagnostic("x.bpf.c", 2, 2, "warning", '"per CPU" [-W#warnings]')
    w = CompileWarning(d, {"x.bpf.c": "int a;\n#warning \"per CPU\"\n"})
    assert issubclass(CompileWarning, UserWarning) and not issubclass(CompileWarning, LccError)
    assert w.diagnostic == d
    assert str(w) == ('x.bpf.c:2:2: warning: "per CPU" [-W#warnings]\n'
                      '    2 | #warning "per CPU"\n'
                      '      |  ^')
