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
           "R0 invalid mem access 'map_value_or_null'\n"
           "verification time 12 usec\nstack depth 8\n"
           "processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0\n")
    e = ProgramLoadError(errno.EACCES, "prog", log)
    assert str(e) == ("program 'prog' was rejected by the verifier: "
                      "R0 invalid mem access 'map_value_or_null'")
    assert e.verifier_log == log and e.program == "prog"
    bare = ProgramLoadError(errno.EPERM, "prog", "", hint="use a tracepoint")
    assert str(bare) == ("program 'prog' could not be loaded: Operation not permitted "
                         "(use a tracepoint)")


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
    assert str(e) == ("clang could not compile the program: x.bpf.c:3:5: error: "
                      "use of undeclared identifier 'y'")
    assert Diagnostic.from_dict(d.to_dict()) == d
    assert ToolchainMissing("no clang").hint
