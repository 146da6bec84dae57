"""``lcc run`` against the running kernel: events, key/value maps and histograms.

A child process, held at its gate until ``lcc run`` says it is attached,
calls lseek(2) with known offsets and exits; progs/run_maps.bpf.c turns each
call of that pid into a ring-buffer event, a raw perf-buffer record and
entries in maps of every shape.  The test then checks what was printed
against the offsets.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gatedchild import GatedChild, GoOnAttach
from lcc.cli import run as lcc_run
from lcc.hist import Log2Hist

pytestmark = pytest.mark.bpf

PROGS = Path(__file__).resolve().parent / "progs"
MAPS_PROG = PROGS / "run_maps.bpf.c"
OFFSETS = [1, 2, 3, 5, 8, 100, 1000, 1000, 70000]
FORKS = 3

# Children held at their gate (tests/gatedchild.py) until lcc run has attached.
LSEEK_SETUP = 'fd = os.open("/dev/zero", os.O_RDONLY)'
LSEEK_BODY = """
for off in map(int, sys.argv[1:]):
    os.lseek(fd, off, os.SEEK_SET)
"""
FORK_BODY = """
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


@pytest.fixture
def lseek_child():
    with GatedChild(LSEEK_BODY, *OFFSETS, setup=LSEEK_SETUP) as c:
        yield c


def _run(path: Path, child: GatedChild, json_out: bool = False, defines=None,
         **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), GoOnAttach(child)
    # Every event is in the buffers before the loop starts: the child has exited.
    code = lcc_run.run(str(path), defines, 0.05, json_out, out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def _section(text: str, header: str) -> list[str]:
    """The lines after ``header`` up to the next blank line."""
    lines = text.splitlines()
    i = lines.index(header)
    body = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        body.append(line)
    return body


def _hist_rows(lines: list[str]) -> dict[int, int]:
    """{low: count} from BCC-style histogram rows."""
    rows = {}
    for line in lines:
        if "->" in line:
            low = int(line.split("->")[0])
            rows[low] = int(line.split(":")[1].split("|")[0])
    return rows


def _expected_rows(values: list[int]) -> dict[int, int]:
    return {b.low: b.count for b in Log2Hist.from_values(values).buckets}


def test_text_output(lseek_child):
    code, out, err = _run(MAPS_PROG, lseek_child, rodata={"targ_tgid": lseek_child.pid})
    assert code == 0, err
    assert "Attached 1 of 1 programs (on_lseek); 2 event buffers" in err

    # Ring buffer events: decoded, one line each, in order, with the stack under it.
    events = [ln for ln in out.splitlines() if ln.startswith("events: ")]
    assert [int(ln.split(" offset=")[1].split()[0]) for ln in events] == OFFSETS
    assert all(f"pid={lseek_child.pid} " in ln for ln in events)
    first = out.splitlines().index(events[0])
    frames = []
    for ln in out.splitlines()[first + 1:]:
        if not ln.startswith("    "):
            break
        frames.append(ln.strip())
    assert frames and all("+0x" in f for f in frames)
    assert any(f.startswith("do_syscall_64+") for f in frames)

    # The perf buffer without lbc_event: raw bytes as hex.
    raw = [ln.split(": ")[1] for ln in out.splitlines() if ln.startswith("raw_out: ")]
    assert sorted(int.from_bytes(bytes.fromhex(h), "little") for h in raw) == sorted(OFFSETS)

    # Hash map: key: value lines, sorted by value.
    rem = {int(k): int(v) for k, v in (ln.strip().split(": ") for ln in
                                       _section(out, "@by_rem:"))}
    assert rem == {r: sum(1 for o in OFFSETS if o % 3 == r) for r in range(3)
                   if any(o % 3 == r for o in OFFSETS)}
    assert list(rem.values()) == sorted(rem.values())

    # Array map: only its non-zero entries.
    small = {int(k): int(v) for k, v in (ln.strip().split(": ") for ln in
                                         _section(out, "@small:"))}
    want = {}
    for o in OFFSETS:
        want[o % 8] = want.get(o % 8, 0) + 1
    assert small == want

    # Per-CPU array: summed over the CPUs.
    assert _section(out, "@total:") == [f"  0: {sum(OFFSETS)}"]

    # Histograms: a slot-keyed hash and an array named *slots*.
    for name in ("@offset_hist:", "@slots:"):
        body = _section(out, name)
        assert "count     distribution" in body[0]
        assert _hist_rows(body) == _expected_rows(OFFSETS)

    # A struct key with a slot member: one histogram per parity.
    for parity in (0, 1):
        body = _section(out, f"@by_parity[{parity}]:")
        assert _hist_rows(body) == _expected_rows([o for o in OFFSETS if o % 2 == parity])

    # .bss globals.
    assert f"seen: {len(OFFSETS)}" in out.splitlines()
    # The stack map is not printed on its own.
    assert "@kstacks:" not in out


def test_json_output(lseek_child):
    code, out, err = _run(MAPS_PROG, lseek_child, json_out=True,
                          rodata={"targ_tgid": lseek_child.pid})
    assert code == 0, err
    recs = [json.loads(ln) for ln in out.splitlines()]
    events = [r for r in recs if r.get("map") == "events"]
    assert [e["event"]["offset"] for e in events] == OFFSETS
    assert all(e["event"]["comm"] == lseek_child.comm for e in events)
    assert all("kstack_id" in e["stacks"] for e in events)
    raw = [r for r in recs if r.get("map") == "raw_out"]
    # perf pads raw samples to 8 bytes with their 4-byte size header: 8 bytes arrive as 12.
    assert sorted(int.from_bytes(bytes.fromhex(r["data"][:16]), "little") for r in raw) == \
        sorted(OFFSETS)
    maps = {r["map"]: r for r in recs if "kind" in r}
    assert maps["offset_hist"]["kind"] == "hist"
    assert maps["offset_hist"]["hist"]["total"] == len(OFFSETS)
    assert maps["slots"]["hist"] == maps["offset_hist"]["hist"]
    assert maps["by_parity"]["kind"] == "hists"
    assert {h["key"]: h["hist"]["total"] for h in maps["by_parity"]["hists"]} == {
        0: sum(1 for o in OFFSETS if o % 2 == 0), 1: sum(1 for o in OFFSETS if o % 2)}
    assert maps["by_rem"]["kind"] == "kv"
    assert sum(e["value"] for e in maps["by_rem"]["entries"]) == len(OFFSETS)
    assert maps["total"]["entries"] == [{"key": 0, "value": sum(OFFSETS)}]
    assert "kstacks" not in maps
    glob = [r for r in recs if "globals" in r]
    assert glob == [{"globals": ".bss", "values": {"seen": len(OFFSETS)}}]


def test_seed_eventout_kprobe_is_not_supported_here(tmp_path):
    from lcc import features
    if features.has_kprobes():
        pytest.skip("this kernel has kprobes; the NotSupported path cannot be shown")
    out, err = io.StringIO(), io.StringIO()
    code = lcc_run.run(str(PROGS / "run_eventout_kprobe.bpf.c"), None, 0.01, False, out, err=err)
    assert code == 1
    msg = err.getvalue()
    assert msg.startswith("lcc run: no program of ") and "kprobe" in msg
    assert len(msg.strip().splitlines()) == 1
    assert out.getvalue() == ""


def test_seed_eventout_tracepoint_variant():
    with GatedChild(FORK_BODY, FORKS) as child:
        code, out, err = _run(PROGS / "run_eventout_tp.bpf.c", child)
    assert code == 0, err
    mine = [ln for ln in out.splitlines()
            if ln.startswith("e_out: ") and f"c_pid={child.pid} " in ln]
    assert len(mine) == FORKS
    new_pids = set()
    for ln in mine:
        fields = dict(kv.split("=", 1) for kv in ln[len("e_out: "):].split())
        assert int(fields["p_pid"]) not in (0, child.pid)  # the new task
        new_pids.add(int(fields["p_pid"]))
        # A fork keeps its parent's comm.
        assert fields["c_comm"] == fields["p_comm"] == child.comm, ln
    assert len(new_pids) == FORKS  # one event per fork, each for its own task


def test_cli_sigterm_prints_maps(lseek_child):
    p = subprocess.Popen([sys.executable, "-m", "lcc.cli", "run", str(MAPS_PROG), "--set", f"targ_tgid={lseek_child.pid}",
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        while line.startswith("lcc run: ") and "Error:" not in line:  # notes come first
            line = p.stderr.readline()
        assert line.startswith("Attached"), line
        lseek_child.go()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    recs = [json.loads(ln) for ln in out.splitlines()]
    maps = {r["map"]: r for r in recs if "kind" in r}
    assert maps["offset_hist"]["hist"]["total"] == len(OFFSETS)
    assert [r["event"]["offset"] for r in recs if r.get("map") == "events"] == OFFSETS


def test_errors_start_with_the_command(tmp_path):
    bad = tmp_path / "bad.bpf.c"
    bad.write_text('#include "lbc.h"\nint x = ;\n')
    err = io.StringIO()
    assert lcc_run.run(str(bad), None, 0.01, False, io.StringIO(), err=err) == 1
    assert err.getvalue().startswith("lcc run: clang could not compile the program (1 error):\n")
    err = io.StringIO()
    assert lcc_run.run(str(tmp_path / "missing.bpf.c"), None, 0.01, False, io.StringIO(),
                      err=err) == 1
    assert "does not exist" in err.getvalue()


def test_defines_reach_the_compiler(tmp_path, lseek_child):
    src = MAPS_PROG.read_text().replace("const volatile u32 targ_tgid = 0;",
                                        "const volatile u32 targ_tgid = TARGET;")
    prog = tmp_path / "defined.bpf.c"
    prog.write_text(src)
    code, out, err = _run(prog, lseek_child, defines={"TARGET": str(lseek_child.pid)})
    assert code == 0, err
    assert f"seen: {len(OFFSETS)}" in out.splitlines()


def test_compiled_object(tmp_path, lseek_child, compile_prog):
    obj = tmp_path / "run_maps.o"
    obj.write_bytes(compile_prog(str(MAPS_PROG)))
    code, out, err = _run(obj, lseek_child, rodata={"targ_tgid": lseek_child.pid})
    assert code == 0, err
    assert f"seen: {len(OFFSETS)}" in out.splitlines()
    assert len([ln for ln in out.splitlines() if ln.startswith("events: ")]) == len(OFFSETS)


def test_pylcc_histograms_are_drawn_by_their_kind(load):
    """LBC_HIST10 maps by powers of ten (pyLCC's showHist), LBC_HIST2 by powers of two."""
    from lcc import show
    tool = load("hist10.bpf.c")
    os.getppid()
    out = io.StringIO()
    show.dump_maps(tool, out)
    text = out.getvalue()
    ten = text.split("@lat10:\n", 1)[1].split("\n\n", 1)[0]
    two = text.split("@lat2:\n", 1)[1].split("\n\n", 1)[0]
    rows = ten.splitlines()
    assert len(rows) == 3 and all("|" in r and "@" in r for r in rows), ten
    assert "4 -> 7" in two and "distribution" in two, two


def test_verifier_rejection_shows_the_log_tail_then_the_source_line():
    prog = Path(__file__).resolve().parent.parent / "progs" / "verifier.bpf.c"
    err = io.StringIO()
    assert lcc_run.run(str(prog), None, 0.01, False, io.StringIO(), err=err) == 1
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("verifier log (last 12 of ")
    assert lines[0].endswith(" lines; -v shows all):")
    assert len(lines) == 1 + 12 + 3
    assert lines[11] == "  R0 invalid mem access 'map_value_or_null'"
    assert lines[-3:] == [
        "lcc run: program 'unchecked' was rejected by the verifier: R0 invalid mem access "
        "'map_value_or_null'",
        "  at verifier.bpf.c:20: v->slots[0] += 1;",
        "  hint: the pointer may be NULL: check what bpf_map_lookup_elem() (or the helper) "
        "returned before using it, e.g. if (!v) return 0;"]

    err = io.StringIO()
    assert lcc_run.run(str(prog), None, 0.01, False, io.StringIO(), err=err, verbose=True) == 1
    lines = err.getvalue().splitlines()
    assert lines[0] == "verifier log:"
    assert "  ; int unchecked(void *ctx) @ verifier.bpf.c:15" in lines
