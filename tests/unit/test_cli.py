"""The ``lcc`` command, run as a subprocess (``python -m lcc.cli``).

Compiling needs clang, bpftool and kernel BTF (marker ``toolchain``); nothing
needs privileges.  Every run gets a private cache (LCC_CACHE_DIR) and no
compile service in its environment.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest


TOOL_H = """\
#ifndef __TOOL_H
#define __TOOL_H
struct event {
\tu32 pid;
\tu64 delta_ns;
\tchar comm[TASK_COMM_LEN];
};
#endif
"""

TOOL_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"
#include "tool.h"

const volatile u32 targ_pid = 0;
u64 total = 0;

LBC_RINGBUF(events, struct event, 1 << 16);
LBC_HASH(counts, u32, u64, 1024);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tu32 pid = bpf_get_current_pid_tgid() >> 32;
\tstruct event *e;

\tif (targ_pid && pid != targ_pid)
\t\treturn 0;
\tlbc_count(&counts, &pid);
\te = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
\tif (!e)
\t\treturn 0;
\te->pid = pid;
\te->delta_ns = ++total;
\tbpf_get_current_comm(e->comm, sizeof(e->comm));
\tbpf_ringbuf_submit(e, 0);
\treturn 0;
}

SEC("uprobe")
int on_call(void *ctx)
{
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

NEEDS_DEFINE = """\
#include "lbc.h"
#ifndef SLOTS
#error SLOTS must be defined
#endif
LBC_ARRAY(slots, u32, u64, SLOTS);
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items()
         if k not in ("LCC_SERVER", "LCC_BACKEND", "LCC_TOKEN")}
    e["LCC_CACHE_DIR"] = str(tmp_path / "cache")
    e["PATH"] = e.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return e


@pytest.fixture
def lcc(env, tmp_path):
    def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "lcc.cli", *args], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        if check is not None:
            assert p.returncode == check, f"lcc {' '.join(args)}: {p.returncode}\n{p.stderr}"
        return p
    return run


@pytest.fixture
def tool(tmp_path) -> Path:
    (tmp_path / "tool.h").write_text(TOOL_H)
    (tmp_path / "tool.bpf.c").write_text(TOOL_C)
    return tmp_path / "tool.bpf.c"


def elf_machine(path: Path) -> str:
    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(path.read_bytes())).header["e_machine"]


def one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1, p.stderr
    assert re.match(r"lcc [a-z]+: ", lines[0]) and "Error: " not in lines[0], lines[0]
    return lines[0]


# -- help ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["compile"], ["run"], ["inspect"], ["doctor"], ["cache"], ["cache", "ls"],
    ["cache", "clear"], ["cache", "dir"], ["btf"], ["btf", "push"], ["btf", "pull"],
    ["btf", "ls"], ["server"]])
def test_help_everywhere(lcc, args):
    p = lcc(*args, "--help")
    assert p.stdout.startswith(f"usage: lcc {' '.join(args)}".rstrip())


def test_no_command_prints_usage(lcc):
    p = lcc(check=2)
    assert "usage: lcc" in p.stderr and "compile" in p.stderr


def test_usage_errors_are_argparse_errors(lcc, tool):
    p = lcc("compile", str(tool), "--backend", "bogus", check=2)
    assert "invalid choice" in p.stderr


# -- run (its loading and printing: tests/kernel/test_run.py) ------------------------------

def test_run_defines_and_assignments():
    import argparse
    from lcc.cli import run
    p = run.configure_parser(argparse.ArgumentParser())
    a = p.parse_args(["x.bpf.c", "-D", "A=1", "-D", "B", "--set", "pid=0x10", "-s", "c=bash",
                      "-d", "2", "--json"])
    assert dict(a.defines) == {"A": "1", "B": None}
    assert dict(a.rodata) == {"pid": 16, "c": "bash"}
    assert a.duration == 2 and a.json


def test_run_missing_file_is_one_line(lcc):
    p = lcc("run", "nope.bpf.c", check=1)
    assert p.stderr.startswith("lcc run: ") and "Error" not in p.stderr and "does not exist" in p.stderr


# -- compile --------------------------------------------------------------------------------

@pytest.mark.toolchain
def test_compile_writes_an_elf_object_and_is_cached(lcc, tool, tmp_path):
    first = lcc("compile", str(tool), "-o", "out.bpf.o")
    again = lcc("compile", str(tool), "-o", "again.bpf.o")
    default = lcc("compile", str(tool))

    assert elf_machine(tmp_path / "out.bpf.o") == "EM_BPF"
    assert "compiled locally" in first.stdout
    assert "from the cache" in again.stdout
    assert (tmp_path / "again.bpf.o").read_bytes() == (tmp_path / "out.bpf.o").read_bytes()
    assert (tmp_path / "tool.bpf.o").read_bytes() == (tmp_path / "out.bpf.o").read_bytes()
    assert default.stderr == ""


@pytest.mark.toolchain
def test_compile_defines(lcc, tmp_path):
    (tmp_path / "d.bpf.c").write_text(NEEDS_DEFINE)

    missing = lcc("compile", "d.bpf.c", check=None)
    given = lcc("compile", "d.bpf.c", "-D", "SLOTS=8", "-DUNUSED")

    assert missing.returncode == 1
    assert missing.stderr.splitlines()[:2] == [
        "lcc compile: clang could not compile the program (2 errors):",
        "d.bpf.c:3:2: error: SLOTS must be defined"]
    assert "d.bpf.o" in given.stdout


@pytest.mark.toolchain
def test_compile_errors_are_drawn_with_carets(lcc, tmp_path):
    (tmp_path / "bad.bpf.c").write_text('#include "lbc.h"\nint x = ;\n\tint y = z;\n')

    p = lcc("compile", "bad.bpf.c", check=1)

    assert p.stderr == (
        "lcc compile: clang could not compile the program (2 errors):\n"
        "bad.bpf.c:2:9: error: expected expression\n"
        "    2 | int x = ;\n"
        "      |         ^\n"
        "bad.bpf.c:3:10: error: use of undeclared identifier 'z'\n"
        "    3 | \tint y = z;\n"
        "      | \t        ^\n")
    assert not (tmp_path / "bad.bpf.o").exists()


@pytest.mark.toolchain
def test_compile_warnings_are_drawn_with_carets(lcc, tmp_path):
    (tmp_path / "w.bpf.c").write_text(
        '#include "lbc.h"\n#warning "counts are per CPU"\n'
        'SEC("tracepoint/syscalls/sys_enter_getppid")\nint p(void *ctx)\n{\n\treturn 0;\n}\n'
        'char LICENSE[] SEC("license") = "GPL";\n')

    p = lcc("compile", "w.bpf.c")

    assert p.stderr == ('w.bpf.c:2:2: warning: "counts are per CPU" [-W#warnings]\n'
                        '    2 | #warning "counts are per CPU"\n'
                        '      |  ^\n')


@pytest.mark.toolchain
def test_compile_error_with_verbose_shows_the_log(lcc, tmp_path):
    (tmp_path / "bad.bpf.c").write_text('#include "lbc.h"\nint x = ;\nint y = ;\n')

    p = lcc("compile", "-v", "bad.bpf.c", check=1)

    log, report = p.stderr.split("lcc compile: ")
    assert "bad.bpf.c:3:9: error: expected expression" in log  # clang's own words first
    assert report.startswith("clang could not compile the program (2 errors):\n")


@pytest.mark.toolchain
def test_compile_prints_warnings(lcc, tmp_path):
    (tmp_path / "w.bpf.c").write_text('#include "lbc.h"\n#warning check me\n'
                                      'char LICENSE[] SEC("license") = "GPL";\n')

    p = lcc("compile", "w.bpf.c")

    assert re.search(r"w\.bpf\.c:2:\d+: warning: check me", p.stderr)


@pytest.mark.toolchain
def test_compile_json_describes_the_object(lcc, tool, tmp_path):
    import hashlib
    first = json.loads(lcc("compile", str(tool), "-o", "t.bpf.o", "--json").stdout)
    again = json.loads(lcc("compile", str(tool), "-o", "t.bpf.o", "--json").stdout)

    data = (tmp_path / "t.bpf.o").read_bytes()
    assert set(first) == {"output", "digest", "size", "origin", "cached", "cache_hit",
                          "btf_output", "warnings", "programs", "maps"}
    assert first["output"] == "t.bpf.o" and first["size"] == len(data)
    assert first["digest"] == hashlib.sha256(data).hexdigest()
    assert (first["origin"], first["cached"], first["cache_hit"]) == ("local", False, False)
    assert (again["cached"], again["cache_hit"]) == (True, True)
    assert first["btf_output"] is None and first["warnings"] == []
    assert {"name": "on_getpid", "section": "tracepoint/syscalls/sys_enter_getpid",
            "type": "tracepoint"} in first["programs"]
    assert {"name": "counts", "type": "hash"} in first["maps"]
    assert {"name": "events", "type": "ringbuf"} in first["maps"]


@pytest.mark.toolchain
def test_compile_json_carries_warnings_as_dicts(lcc, tmp_path):
    (tmp_path / "w.bpf.c").write_text(
        '#include "lbc.h"\n#warning check me\n'
        'SEC("tracepoint/syscalls/sys_enter_getppid")\nint p(void *ctx)\n{\n\treturn 0;\n}\n'
        'char LICENSE[] SEC("license") = "GPL";\n')

    out = json.loads(lcc("compile", "w.bpf.c", "--json", "--btf").stdout)

    assert out["btf_output"] == "w.btf" and (tmp_path / "w.btf").stat().st_size > 0
    [w] = out["warnings"]
    assert w == {"file": "w.bpf.c", "line": 2, "column": w["column"], "severity": "warning",
                 "message": "check me [-W#warnings]"}
    assert [p["name"] for p in out["programs"]] == ["p"] and out["maps"] == []


@pytest.mark.toolchain
def test_compile_btf_writes_tailored_btf(lcc, tool, tmp_path):
    lcc("compile", str(tool), "-o", "t.bpf.o", "--btf")

    btf = (tmp_path / "t.btf").read_bytes()
    assert btf[:2] in (b"\x9f\xeb", b"\xeb\x9f")  # raw BTF magic


def test_compile_missing_file(lcc):
    assert "no such file: nope.bpf.c" in one_error_line(lcc("compile", "nope.bpf.c", check=None))


def test_compile_against_a_dead_service_names_it(lcc, tool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = one_error_line(lcc("compile", str(tool), "--server", url, check=None))
    assert f"compile service at {url} is unreachable" in line


def test_server_backend_without_url(lcc, tool):
    line = one_error_line(lcc("compile", str(tool), "--backend", "server", check=None))
    assert "LCC_SERVER" in line


@pytest.mark.toolchain  # the local backend is chosen by its clang
def test_other_kernel_without_service_is_refused(lcc, tool):
    line = one_error_line(lcc("compile", str(tool), "--backend", "local", "--kernel",
                              "4.19.0-other", check=None))
    assert "4.19.0-other" in line and "--server" in line


# -- inspect ----------------------------------------------------------------------------------

@pytest.mark.toolchain
def test_inspect_lists_programs_maps_globals_with_btf_types(lcc, tool, tmp_path):
    lcc("compile", str(tool), "-o", "t.bpf.o")

    text = lcc("inspect", "t.bpf.o").stdout
    info = json.loads(lcc("inspect", "t.bpf.o", "--json").stdout)

    assert 'on_getpid  SEC("tracepoint/syscalls/sys_enter_getpid")' in text
    assert "attach tracepoint syscalls/sys_enter_getpid" in text
    assert re.search(r"events\s+ringbuf, max_entries 65536", text)
    assert "event struct event (32 bytes)" in text
    assert re.search(r"counts\s+hash, max_entries 1024", text)
    assert "key u32 (4 bytes)" in text and "value u64 (8 bytes)" in text
    assert re.search(r"\.rodata\s+const volatile u32 targ_pid \(4 bytes\)", text)
    assert re.search(r"\.bss\s+u64 total", text)
    assert "+8    u64 delta_ns" in text

    progs = {p["name"]: p for p in info["programs"]}
    assert progs["on_getpid"]["type"] == "tracepoint"
    assert progs["on_call"] == {"name": "on_call", "section": "uprobe", "type": "kprobe",
                                "kind": "uprobe", "target": ""}
    maps = {m["name"]: m for m in info["maps"]}
    assert maps["counts"]["key_type"] == {"name": "u32", "size": 4}
    assert maps["events"]["event_type"] == {"name": "struct event", "size": 32}
    assert info["types"]["struct event"]["members"][2] == {
        "name": "comm", "type": "char[16]", "offset": 16}


@pytest.mark.toolchain
def test_inspect_compiles_a_source_first(lcc, env):
    """A .bpf.c is compiled (through the cache, as by `lcc compile`) and its object inspected."""
    src = str(Path(__file__).resolve().parents[1] / "progs" / "events.bpf.c")

    text = lcc("inspect", src).stdout
    info = json.loads(lcc("inspect", src, "--json", "--backend", "local").stdout)

    assert text.startswith(f"{src}: 2 programs, ")
    assert re.search(r'emit\s+SEC\("tracepoint/syscalls/sys_enter_getppid"\)', text)
    assert re.search(r"rb\s+ringbuf, max_entries 65536", text)
    assert {p["name"] for p in info["programs"]} == {"emit", "burst"}
    maps = {m["name"]: m for m in info["maps"]}
    assert maps["pb"]["type"] == "perf_event_array"
    assert maps["rb"]["event_type"]["name"] == "struct event"
    cached = json.loads(lcc("cache", "ls", "--json").stdout)["entries"]
    assert [e["source"] for e in cached] == ["events.bpf.c"]


def test_inspect_source_errors_are_one_line(lcc):
    assert "no such file: missing.bpf.c" in one_error_line(
        lcc("inspect", "missing.bpf.c", check=None))


def test_inspect_rejects_non_objects(lcc, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    assert "not an ELF object" in one_error_line(lcc("inspect", "x.txt", check=None))
    assert "cannot read" in one_error_line(lcc("inspect", "missing.o", check=None))


# -- doctor, cache, btf ---------------------------------------------------------------------

def test_doctor_reports_kernel_and_probes(lcc):
    from lcc import features

    p = lcc("doctor")
    info = json.loads(lcc("doctor", "--json").stdout)

    assert re.search(rf"^kernel:\s+{re.escape(os.uname().release)} \({os.uname().machine}\)$",
                     p.stdout, re.M)
    kprobes = "yes" if features.has_kprobes() else "no"
    assert re.search(rf"^kprobes:\s+{kprobes}$", p.stdout, re.M)
    assert re.search(r"^libbpf:\s+\d+\.\d+$", p.stdout, re.M)
    assert info["kprobes"]["ok"] is features.has_kprobes()
    for key, value in info.items():  # the stable shape scripts rely on
        assert " " not in key and set(value) in ({"ok", "detail"}, {"ok", "reason"}), key
        assert isinstance(value["ok"], bool) and all(isinstance(v, str) for k, v in
                                                      value.items() if k != "ok")
    if features.bpf_privileges():
        assert info["privileges"] == {"ok": True, "detail": "yes"}
        assert info["program_type.tracepoint"] == {"ok": True, "detail": "yes"}
        assert info["map_type.hash"]["ok"] is True
        assert info["kernel_btf"]["ok"] is features.has_kernel_btf()


def test_doctor_json_entries():
    from lcc.cli.doctor import json_report
    assert json_report({"kernel": "6.1 (x86_64)", "raw/BTF tracepoints": "no (no BTF)",
                        "kprobes": None, "uprobes": True, "bpftool": "no",
                        "fentry": "the kernel refuses fentry programs here",
                        "map types": {"hash": True, "arena": False}}) == {
        "kernel": {"ok": True, "detail": "6.1 (x86_64)"},
        "tp_btf": {"ok": False, "reason": "no BTF"},
        "kprobes": {"ok": False, "reason": "unknown (a probe could not tell)"},
        "uprobes": {"ok": True, "detail": "yes"},
        "bpftool": {"ok": False, "reason": "no"},
        "fentry": {"ok": False, "reason": "the kernel refuses fentry programs here"},
        "map_type.hash": {"ok": True, "detail": "yes"},
        "map_type.arena": {"ok": False, "reason": "no"}}


@pytest.mark.toolchain
def test_cache_ls_and_clear(lcc, tool, env):
    lcc("compile", str(tool))

    listed = lcc("cache", "ls").stdout
    cleared = lcc("cache", "clear").stdout
    after = lcc("cache", "ls").stdout

    assert f"# {env['LCC_CACHE_DIR']}: 1 entry" in listed
    assert "tool.bpf.c" in listed and "local" in listed
    assert cleared.startswith("removed 1 entry")
    assert ": 0 entries" in after
    assert lcc("cache", "dir").stdout.strip() == env["LCC_CACHE_DIR"]


@pytest.mark.toolchain
def test_cache_ls_json(lcc, tool, env):
    lcc("compile", str(tool))

    listed = json.loads(lcc("cache", "ls", "--json").stdout)

    assert listed["root"] == env["LCC_CACHE_DIR"]
    [e] = listed["entries"]
    assert set(e) == {"key", "digest", "source", "kernel", "arch", "size", "btf", "created",
                      "origin"}
    assert (e["source"], e["origin"], e["btf"]) == ("tool.bpf.c", "local", False)
    assert (e["kernel"], e["arch"]) == (os.uname().release, os.uname().machine)
    assert len(e["digest"]) == 64 and e["size"] > 0 and isinstance(e["created"], float)
    lcc("cache", "clear")
    assert json.loads(lcc("cache", "ls", "--json").stdout)["entries"] == []


def test_btf_ls_json(monkeypatch, capsys):
    """The service's list, with sizes as ints and full digests; nothing else on stdout."""
    from lcc import cli
    from lcc.cli import btf

    class FakeClient:
        url = "http://svc:8000"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def btf_list(self):
            return [{"arch": "x86_64", "release": "6.1.0", "source": "push", "size": "4096",
                     "sha256": "ab" * 32},
                    {"arch": "aarch64", "release": "5.15.0"}]

    monkeypatch.setattr(btf, "server_client", lambda args: FakeClient())

    assert cli.main(["btf", "ls", "--json"]) == 0

    assert json.loads(capsys.readouterr().out) == {"server": "http://svc:8000", "kernels": [
        {"arch": "x86_64", "release": "6.1.0", "source": "push", "size": 4096,
         "sha256": "ab" * 32},
        {"arch": "aarch64", "release": "5.15.0", "source": None, "size": None,
         "sha256": None}]}


def test_btf_without_service(lcc):
    assert "LCC_SERVER" in one_error_line(lcc("btf", "ls", check=None))


@pytest.mark.toolchain
def test_verbose_before_or_after_the_command(lcc, tool):
    """-v turns on libbpf's own log (opening an object makes it talk), in either place."""
    lcc("compile", str(tool), "-o", "tool.bpf.o")
    quiet = lcc("inspect", "tool.bpf.o")
    before = lcc("-v", "inspect", "tool.bpf.o")
    after = lcc("inspect", "tool.bpf.o", "-v")
    assert "libbpf" not in quiet.stderr
    assert "libbpf" in before.stderr and "libbpf" in after.stderr


def test_readme_lists_the_machine_readable_and_printk_options():
    """The README's `lcc` command section names --json where commands take it,
    --printk and inspecting a source, and the parser agrees."""
    from lcc.cli import build_parser
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The `lcc` command", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())

    assert "lcc btf push|pull|ls [--json]" in flat and "lcc cache ls [--json]|clear" in flat
    assert re.search(r"`lcc compile foo\.bpf\.c [^`]*\[--json\]`", flat)
    assert re.search(r"`lcc run foo\.bpf\.c [^`]*\[--printk\]`", flat)
    assert "`lcc inspect foo.bpf.c" in flat
    for key in ("cache_hit", "btf_output", "sha256", "created"):
        assert f'"{key}"' in flat
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert "--printk" in sub["run"].format_help() and "--json" in sub["compile"].format_help()
