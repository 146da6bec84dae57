"""``lcc run`` on programs written as libbpf tools are: no lbc.h, plain maps, a C loader's jobs.

The programs (tests/kernel/progs/libbpf_*) are in the style of libbpf-tools'
execsnoop (plain ring buffer, event type only behind a pointer), opensnoop
(plain perf event array, event on the stack), runqlat and cpudist (tp_btf and
raw_tp copies of a handler, a map without max_entries, .bss holding only
static variables) and profile (a perf_event program).  Each is triggered by a
child held at its gate until ``lcc run`` has attached, doing a known
execve(2), openat(2), lseek(2) or a stretch of CPU work, and what was printed
is checked field by field.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from gatedchild import GatedChild, GoOnAttach
from lcc import ClbcBase
from lcc.cli import run as lcc_run
from lcc.errors import BpfError, BtfError
from lcc.hist import Log2Hist
from lcc.maps.eventtypes import OutputSite, output_sites
from lcc.syscalls import syscall_table

pytestmark = pytest.mark.bpf

PROGS = Path(__file__).resolve().parent / "progs"
EXECSNOOP = PROGS / "libbpf_execsnoop.bpf.c"
OPENSNOOP = PROGS / "libbpf_opensnoop.bpf.c"
RUNQLAT = PROGS / "libbpf_runqlat.bpf.c"
PROFILE = PROGS / "libbpf_profile.bpf.c"
OFFSETS = [1, 2, 3, 5, 8, 100, 1000, 1000, 70000]
BPF_F_MMAPABLE = 1 << 10


def _run(path: Path, child: GatedChild, json_out: bool = False, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), GoOnAttach(child)
    # The child has finished when the loop starts: its events wait in the buffers.
    code = lcc_run.run(str(path), None, 0.05, json_out, out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def _fields(line: str, prefix: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line[len(prefix):].split())


def _section(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    body = []
    for line in lines[lines.index(header) + 1:]:
        if not line.strip():
            break
        body.append(line)
    return body


def _hist_rows(lines: list[str]) -> dict[int, int]:
    return {int(ln.split("->")[0]): int(ln.split(":")[1].split("|")[0])
            for ln in lines if "->" in ln}


# -- events of plain ring buffers and perf event arrays ----------------------------------

def test_plain_ringbuf_events_are_decoded():
    with GatedChild('os.execv("/bin/true", ["/bin/true"])') as child:
        code, out, err = _run(EXECSNOOP, child, rodata={"targ_tgid": child.pid})
    assert code == 0, err
    # The type was found although the program only points to it from locals.
    assert ("lcc run: events: decoding events as struct event (96 bytes, the size given "
            "to bpf_ringbuf_reserve;") in err
    events = [ln for ln in out.splitlines() if ln.startswith("events: ")]
    assert len(events) == 1, out
    ev = _fields(events[0], "events: ")
    assert ev == {"pid": str(child.pid), "ppid": str(os.getpid()), "uid": str(os.getuid()),
                  "retval": "0", "comm": "true", "filename": "/bin/true"}


def test_plain_perf_events_from_the_stack_are_decoded(tmp_path):
    target = tmp_path / "opened-by-the-child"
    target.write_text("x")
    body = "os.close(os.open(sys.argv[1], os.O_RDONLY))"
    with GatedChild(body, target) as child:
        code, out, err = _run(OPENSNOOP, child, json_out=True, rodata={"targ_tgid": child.pid})
    assert code == 0, err
    assert "decoding events as struct event (296 bytes, the size given to " \
           "bpf_perf_event_output;" in err
    events = [json.loads(ln)["event"] for ln in out.splitlines()
              if json.loads(ln).get("map") == "events"]
    assert [e["fname"] for e in events] == [str(target)]
    ev = events[0]
    assert ev["pid"] == child.pid and ev["comm"] == child.comm
    assert ev["ret"] >= 0 and ev["ts"] > 0
    assert ev["flags"] == os.O_RDONLY | os.O_CLOEXEC  # as Python opens files


def test_event_type_named_on_the_command_line(tmp_path):
    target = tmp_path / "named"
    target.write_text("x")
    with GatedChild("os.close(os.open(sys.argv[1], os.O_RDONLY))", target) as child:
        code, out, err = _run(OPENSNOOP, child, rodata={"targ_tgid": child.pid},
                              event_types={"events": "struct event"})
    assert code == 0, err
    assert "decoding events as" not in err  # named, not guessed
    events = [ln for ln in out.splitlines() if ln.startswith("events: ")]
    assert len(events) == 1 and f"fname={target}" in events[0], out


def test_an_object_without_the_type(tmp_path, compile_prog):
    """A .o compiled elsewhere: the stack-only struct is not in its BTF."""
    obj = tmp_path / "opensnoop.o"
    obj.write_bytes(compile_prog(str(OPENSNOOP)))
    target = tmp_path / "raw"
    target.write_text("x")
    with GatedChild("os.close(os.open(sys.argv[1], os.O_RDONLY))", target) as child:
        code, out, err = _run(obj, child, rodata={"targ_tgid": child.pid})
    assert code == 0, err
    assert ("lcc run: events: no event type found: events print as hex "
            "(--event-type events='struct NAME' to decode them)") in err
    raw = [ln.split(": ")[1] for ln in out.splitlines() if ln.startswith("events: ")]
    assert len(raw) == 1 and str(target).encode().hex() in raw[0]

    err = io.StringIO()
    assert lcc_run.run(str(obj), None, 0.01, False, io.StringIO(), err=err,
                       event_types={"events": "struct event"}) == 1
    line, = err.getvalue().splitlines()
    assert line.startswith("lcc run: type 'struct event' is in neither the "
                           "object's BTF nor the kernel's")
    assert "--event-type" in line


def test_output_calls_are_read_from_the_object(compile_prog):
    sites = output_sites(compile_prog(str(OPENSNOOP)))
    assert sites == [OutputSite("tracepoint/syscalls/sys_exit_openat", "bpf_perf_event_output",
                                "events", 296)]
    sites = output_sites(compile_prog(str(EXECSNOOP)))
    assert sites == [OutputSite("tracepoint/syscalls/sys_exit_execve", "bpf_ringbuf_reserve",
                                "events", 96)]


def test_types_kept_in_btf_from_python():
    with ClbcBase(str(OPENSNOOP), keep_types=["struct event"]) as tool:
        m = tool.maps["events"]
        m.set_event_type("struct event")  # on the stack only, but kept
        assert m.event_codec.size == 296
        assert [mb.name for mb in m.event_type.members] == ["ts", "pid", "ret", "flags",
                                                             "comm", "fname"]
        assert m.guess_event_type().type is m.event_type


def test_set_event_type_looks_in_the_kernels_btf(compile_prog):
    with ClbcBase("opensnoop", obj=compile_prog(str(OPENSNOOP))) as tool:
        m = tool.maps["events"]
        assert m.event_type is None and m.guess_event_type() is None
        m.set_event_type("struct timespec64")  # not in the object: the kernel's
        assert str(m.event_type) == "struct timespec64" and m.event_codec.size == 16
        with pytest.raises(BtfError, match="no_such_struct"):
            m.set_event_type("struct no_such_struct")


# -- static .bss, maps sized by the loader, tp_btf/raw_tp alternatives ----------------------

def _lseek_child() -> GatedChild:
    return GatedChild("for off in map(int, sys.argv[1:]):\n    os.lseek(fd, off, os.SEEK_SET)",
                      *OFFSETS, setup='fd = os.open("/dev/zero", os.O_RDONLY)')


LSEEK = syscall_table().number("lseek")


def test_runqlat_style_program():
    with _lseek_child() as child:
        code, out, err = _run(RUNQLAT, child, rodata={"targ_tgid": child.pid,
                                                      "targ_syscall": LSEEK})
    assert code == 0, err
    assert ("lcc run: map hists sized 10240 (the program leaves its size to its loader; "
            "--map-size hists=N to choose)") in err
    assert "lcc run: loading sys_enter_btf rather than its alternative sys_enter_raw" in err
    assert "Attached 1 of 1 programs (sys_enter_btf); 0 event buffers." in err
    # One histogram per key, labelled with the value's other members.
    rows = _hist_rows(_section(out, f"@hists[{child.pid}, comm={child.comm}]:"))
    assert rows == {b.low: b.count for b in Log2Hist.from_values(OFFSETS).buckets}
    # Static variables, read through the map (no mmap).
    assert f"total_calls: {len(OFFSETS)}" in out.splitlines()
    assert re.search(r"^zero: \{slots=\[0(, 0)*\] comm=\"\"\}$", out, re.M)


def test_map_size_on_the_command_line():
    with _lseek_child() as child:
        code, out, err = _run(RUNQLAT, child, map_sizes={"hists": 4},
                              rodata={"targ_tgid": child.pid, "targ_syscall": LSEEK})
    assert code == 0, err
    assert "map hists sized" not in err
    assert f"total_calls: {len(OFFSETS)}" in out.splitlines()
    err = io.StringIO()
    assert lcc_run.run(str(RUNQLAT), None, 0.01, False, io.StringIO(), err=err,
                       map_sizes={"nope": 4}) == 1
    assert "--map-size: no map named 'nope'" in err.getvalue()


def test_static_bss_and_unsized_maps_from_python(compile_prog):
    obj = compile_prog(str(RUNQLAT))
    knobs = {"targ_tgid": os.getpid(), "targ_syscall": LSEEK}
    with ClbcBase("runqlat", obj=obj, rodata=knobs, programs=["sys_enter_btf"],
                  load=False) as tool:
        assert tool.spec.unsized_maps() == ["hists"]
        # The load fails before the kernel's bare EINVAL, naming the map and the fix...
        with pytest.raises(BpfError, match="map 'hists' has max_entries 0") as exc:
            tool.load()
        assert exc.value.errno == 22 and "--map-size hists=N" in str(exc.value)
        # ...and leaves the spec loadable.
        assert tool.spec.default_map_sizes() == {"hists": 10240}
        tool.load()
        tool.attach_all()
        assert not tool.spec.map_spec(".bss").flags & BPF_F_MMAPABLE
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            for off in (4, 40, 400):
                os.lseek(fd, off, os.SEEK_SET)
        finally:
            os.close(fd)
        assert tool.bss.total_calls == 3
        assert tool.bss.zero.slots == (0,) * 26
        tool.bss.total_calls = 100  # written back through the map
        assert tool.bss.total_calls == 100
        assert tool.maps["hists"][os.getpid()].slots[2] == 1  # 4 is in [4, 8)


# -- perf_event programs and what cannot be attached ---------------------------------------

def test_perf_event_program_is_sampled_on_every_cpu():
    spin = "t = time.process_time()\nwhile time.process_time() - t < 0.2:\n    pass"
    with GatedChild(spin, setup="import time") as child:
        code, out, err = _run(PROFILE, child, json_out=True, frequency=1000,
                              rodata={"targ_tgid": child.pid})
    assert code == 0, err
    assert "Attached 1 of 1 programs (do_perf_event); 0 event buffers." in err
    samples = next(json.loads(ln) for ln in out.splitlines()
                   if json.loads(ln).get("map") == "samples")
    counts = {e["key"]: e["value"] for e in samples["entries"]}
    # 0.2 s on a 1 kHz CPU clock: some 200 samples (at least a few whatever the load)
    assert counts.get(child.pid, 0) > 10, counts


def test_attaching_nothing_is_an_error(tmp_path):
    prog = tmp_path / "only_xdp.bpf.c"
    prog.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
                    'SEC("xdp") int pass(struct xdp_md *ctx) { return XDP_PASS; }\n'
                    '/* a loader attaches this to its own binary */\n'
                    'SEC("usdt//proc/self/exe:tool:ready") int ready(void *ctx) { return 0; }\n'
                    'char LICENSE[] SEC("license") = "GPL";\n')
    err = io.StringIO()
    assert lcc_run.run(str(prog), None, 0.01, False, io.StringIO(), err=err) == 1
    xdp, usdt, line = err.getvalue().splitlines()
    assert xdp.startswith("lcc run: not attaching program pass: SEC(\"xdp\") needs a target")
    assert usdt.startswith("lcc run: not attaching program ready: SEC(\"usdt/")
    assert line.startswith("lcc run: lcc run attached no program of "
                           "'only_xdp': pass (SEC(\"xdp\")), ready (")
