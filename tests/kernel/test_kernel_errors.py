"""What lcc says when the kernel says no.

tests/progs/errors.bpf.c holds one program per failure; each test loads only
the one it needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from lcc import (AttachPointMissing, BpfPermissionError, BtfError, ClosedError, KeyNotFound,
                 LccError, NotSupported, ProgramLoadError, features)

from kutil import trigger

pytestmark = pytest.mark.bpf


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_verifier_rejection_carries_the_log(load):
    with pytest.raises(ProgramLoadError) as ei:
        load("errors.bpf.c", programs=["bad_mem"])
    e = ei.value
    assert e.program == "bad_mem"
    assert "invalid mem access" in e.verifier_log
    assert "processed" in e.verifier_log or "R0" in e.verifier_log
    msg = str(e)
    assert msg.startswith("program 'bad_mem' was rejected by the verifier: ")
    assert "invalid mem access 'map_value_or_null'" in msg.splitlines()[0]
    assert e.message == msg.splitlines()[0]  # the log itself stays in .verifier_log
    assert not isinstance(e, PermissionError)  # EACCES from the verifier is not a privilege problem


def test_unchecked_lookup_is_shown_at_its_source_line(load):
    with pytest.raises(ProgramLoadError) as ei:
        load("verifier.bpf.c", programs=["unchecked"])
    e = ei.value
    assert e.source == ("verifier.bpf.c", 20, "v->slots[0] += 1;")
    assert str(e) == (
        "program 'unchecked' was rejected by the verifier: R0 invalid mem access "
        "'map_value_or_null'\n"
        "  at verifier.bpf.c:20: v->slots[0] += 1;\n"
        "  hint: the pointer may be NULL: check what bpf_map_lookup_elem() (or the helper) "
        "returned before using it, e.g. if (!v) return 0;")
    assert "; v->slots[0] += 1; @ verifier.bpf.c:20" in e.verifier_log


def test_unbounded_index_is_shown_at_its_source_line(load):
    with pytest.raises(ProgramLoadError) as ei:
        load("verifier.bpf.c", programs=["unbounded"])
    e = ei.value
    first, at, hint = str(e).splitlines()
    assert first.startswith("program 'unbounded' was rejected by the verifier: R0 ")
    assert at == "  at verifier.bpf.c:33: v->slots[idx] += 1;"
    assert hint == ("  hint: bound the index or offset before using it (if (i >= N) return 0; "
                    "or i & (N - 1)) so the verifier can prove every access stays inside the "
                    "value")


def test_failed_constructor_leaves_nothing_loaded(load):
    load("errors.bpf.c", programs=["core_ok"]).close()  # warm libbpf's one-time state
    before = _fds()
    with pytest.raises(AttachPointMissing):
        load("errors.bpf.c", programs=["missing_tp"])
    assert _fds() == before


def test_missing_tracepoint_is_named(load):
    with pytest.raises(AttachPointMissing) as ei:
        load("errors.bpf.c", programs=["missing_tp"])
    e = ei.value
    assert (e.kind, e.target) == ("tracepoint", "syscalls/sys_enter_no_such_call")
    assert "tracepoint syscalls/sys_enter_no_such_call does not exist" in str(e)
    assert isinstance(e, NotSupported) and e.errno


def test_explicit_attach_to_missing_points(load):
    tool = load("errors.bpf.c", programs=["core_ok"], attach=False)
    with pytest.raises(AttachPointMissing, match="syscalls/sys_enter_nope"):
        tool.attach_tracepoint("core_ok", "syscalls", "sys_enter_nope")
    assert tool.links == []
    with pytest.raises(AttachPointMissing, match="no_such_binary"):
        tool.attach_uprobe("core_ok", "/no_such_binary", "main")


def test_uprobe_missing_symbol_is_named(load):
    tool = load("attach.bpf.c", attach=False)
    with pytest.raises(AttachPointMissing) as ei:
        tool.attach_uprobe("up", "libc.so.6", "lcc_no_such_function")
    assert ei.value.target == "lcc_no_such_function"
    assert "libc.so.6" in str(ei.value)


def test_raw_tracepoint_missing_is_named(load):
    tool = load("attach.bpf.c", attach=False)
    with pytest.raises(AttachPointMissing, match="raw tracepoint lcc_nope does not exist"):
        tool.attach_raw_tracepoint("raw_explicit", "lcc_nope")


def test_kprobe_here_says_kprobes_are_off(load):
    if features.has_kprobes():
        pytest.skip("this kernel has kprobes")
    with pytest.raises(NotSupported) as ei:
        load("errors.bpf.c", programs=["kp"])
    e = ei.value
    assert e.feature == "kprobe"
    assert "no kprobes" in str(e) and "CONFIG_KPROBES" in str(e)
    assert "tracepoint" in e.hint  # what to do instead
    tool = load("errors.bpf.c", programs=["kp"], attach=False)
    with pytest.raises(NotSupported, match="no kprobes"):
        tool.attach_kprobe("kp", "do_nanosleep")
    with pytest.raises(NotSupported, match="no kprobes"):
        tool.attachKretprobe("kp", "do_nanosleep")


def test_use_after_close(load):
    tool = load("errors.bpf.c", programs=["core_ok"])
    vals = tool.maps["vals"]
    link = tool.links[0]
    tool.close()
    for op in (lambda: tool.maps["vals"], lambda: vals[0], lambda: vals.items(),
               lambda: len(vals), lambda: vals.fd, lambda: tool.program("core_ok"),
               lambda: tool.attach_tracepoint("core_ok", "syscalls", "sys_enter_getppid"),
               lambda: link.fd, lambda: tool.obj.btf.find("vals", 4)):
        with pytest.raises(ClosedError):
            op()
    assert isinstance(ClosedError("x"), ValueError)
    assert link.closed
    tool.close()  # idempotent


def test_key_not_found_is_a_key_error(load):
    tool = load("errors.bpf.c", programs=["core_ok"])
    with pytest.raises(KeyError) as ei:
        tool.maps["vals"][12345]
    assert isinstance(ei.value, KeyNotFound) and ei.value.key == 12345
    assert str(ei.value) == "key 12345 not found in map 'vals'"
    assert ei.value.errno == 2
    trigger()
    assert tool.maps["vals"][os.getpid() & 7] == 1  # core_ok keys by tgid & 7


def test_btf_file_missing(prog_object):
    from lcc import ClbcBase
    with pytest.raises(BtfError) as ei:
        ClbcBase("errors", obj=prog_object("errors.bpf.c"), programs=["core_ok"],
                 btf="/nonexistent/vmlinux")
    assert str(ei.value).startswith("the BTF file /nonexistent/vmlinux does not exist")
    assert ei.value.hint


def test_btf_file_unusable(prog_object, tmp_path):
    """What a kernel without usable BTF looks like: CO-RE has nothing to relocate against."""
    from lcc import ClbcBase
    bogus = tmp_path / "vmlinux"
    bogus.write_bytes(b"not BTF at all")
    with pytest.raises(BtfError) as ei:
        ClbcBase("errors", obj=prog_object("errors.bpf.c"), programs=["core_ok"],
                 btf=str(bogus))
    assert f"the BTF file {bogus} cannot be used for CO-RE relocations" in str(ei.value)


def test_btf_file_that_works(prog_object, load):
    tool = load("errors.bpf.c", programs=["core_ok"], btf="/sys/kernel/btf/vmlinux")
    trigger()
    assert tool.maps["vals"][os.getpid() & 7] == 1  # the CO-RE read of tgid worked


CHILD = textwrap.dedent("""
    import sys
    from lcc import ClbcBase, BpfPermissionError
    try:
        ClbcBase("errors", obj=open(sys.argv[1], "rb").read(), programs=["core_ok"])
    except BpfPermissionError as e:
        print("PERM", e.errno, str(e), sep="|")
    else:
        print("LOADED")
""")


def test_missing_privileges(prog_object, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    obj = tmp_path / "errors.bpf.o"
    obj.write_bytes(prog_object("errors.bpf.c"))
    # Root without any capability: what an unprivileged user gets.
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
                        sys.executable, "-c", CHILD, str(obj)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    tag, err, msg = r.stdout.strip().split("|")
    assert tag == "PERM" and int(err) in (1, 13)
    assert "may not use bpf()" in msg
    assert "CAP_BPF" in msg  # the hint says what to grant
    assert "RLIMIT_MEMLOCK" not in msg
    assert issubclass(BpfPermissionError, PermissionError)


WARNS_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"
#warning "counts are per CPU"

SEC("tracepoint/syscalls/sys_enter_getppid")
int p(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_compiler_warnings_reach_python_warnings(tmp_path):
    from lcc import ClbcBase, CompileWarning
    with pytest.warns(CompileWarning) as caught:
        tool = ClbcBase("warns", bpf_str=WARNS_C, load=False, cache=False)
    tool.close()
    w, = [r for r in caught if issubclass(r.category, CompileWarning)]
    assert str(w.message) == ('warns.bpf.c:3:2: warning: "counts are per CPU" [-W#warnings]\n'
                              '    3 | #warning "counts are per CPU"\n'
                              '      |  ^')
    assert w.filename == __file__  # points at the line that made the tool


def _python_for_nobody() -> str:
    """An interpreter user 65534 may run (this one may live under /root)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "--", exe, "-c", "pass"], capture_output=True)
        if r.returncode == 0:
            return exe
    pytest.skip("no Python interpreter that user 65534 may run")


@pytest.mark.parametrize("command", [["run", "tool.bpf.c"], ["doctor"]])
def test_commands_say_first_that_privileges_are_missing(command):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    python = _python_for_nobody()
    import tempfile
    with tempfile.TemporaryDirectory(prefix="lcc-nobody-") as home:  # pytest's tmp_path is 0700
        os.chmod(home, 0o777)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
               "LCC_CACHE_DIR": home,
               "PYTHONPATH": os.pathsep.join(os.path.abspath(os.path.join(src, d))
                                             for d in ("client", "compile_server", "toolchain"))}
        # tool.bpf.c does not exist: the privileges are checked before the file.
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "--inh-caps=-all", "--", python, "-m", "lcc.cli", *command],
                           capture_output=True, text=True, timeout=60, env=env, cwd=home)
    assert r.returncode == 1, r.stderr
    assert r.stderr == f"lcc {command[0]}: not root: run as root or grant CAP_BPF+CAP_PERFMON\n"
    if command == ["doctor"]:
        assert "privileges:" in r.stdout and "tracepoints" not in r.stdout


def test_wrong_names_get_a_suggestion(load):
    tool = load("errors.bpf.c", programs=["core_ok"])
    with pytest.raises(KeyError) as ei:
        tool.maps["val"]
    assert ei.value.args[0] == "no map named 'val' (the object has: vals); did you mean 'vals'?"
    with pytest.raises(LccError) as ei:
        tool.program("core_k")
    assert str(ei.value).endswith("; did you mean 'core_ok'?")
    assert tool["vals"] is tool.maps["vals"]  # BCC's tool["map"]


def test_a_misspelled_tracepoint_gets_a_suggestion(load):
    tool = load("errors.bpf.c", programs=["core_ok"], attach=False)
    with pytest.raises(AttachPointMissing) as ei:
        tool.attach_tracepoint("core_ok", "sched", "sched_swich")
    assert "did you mean 'sched/sched_switch'?" in str(ei.value)
    with pytest.raises(AttachPointMissing) as ei:
        tool.attach_tracepoint("core_ok", "schedd", "sched_switch")
    assert "did you mean 'sched/sched_switch'?" in str(ei.value)
