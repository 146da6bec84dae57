"""What lets ``lcc run`` run libbpf programs, without a kernel: reading the output
calls from instructions, keeping types in BTF, alternatives, arguments, display."""

from __future__ import annotations

import argparse
import io
import json
import struct

import pytest

from lcc import show
from lcc.btf import Array, Int, Member, Struct
from lcc.cli import run as lcc_run
from lcc.maps import eventtypes
from lcc.maps.eventtypes import OutputSite

# -- instructions ---------------------------------------------------------------------


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def ld_map(dst: int) -> bytes:
    """``dst = &map`` before relocation: a 64-bit load of 0 (two slots)."""
    return insn(0x18, dst) + insn(0)


def mov(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst, imm=imm)


def call(helper: int) -> bytes:
    return insn(0x85, imm=helper)


EXIT = insn(0x95)
RESERVE, RINGBUF_OUTPUT, PERF_OUTPUT = 131, 130, 25


def scan(*parts: bytes, maps: dict[int, str] | None = None):
    """_scan over the instructions ``parts``; ``maps``: instruction index -> map name."""
    return eventtypes._scan(b"".join(parts), {i * 8: n for i, n in (maps or {}).items()},
                            False)


def test_reserve_size_and_map_are_read():
    code = [ld_map(1), mov(2, 56), mov(3, 0), call(RESERVE), EXIT]
    assert scan(*code, maps={0: "events"}) == [("bpf_ringbuf_reserve", "events", 56)]


def test_perf_output_reads_r2_and_r5():
    code = [mov(1, 0), ld_map(2), mov(3, -1), insn(0xBF, 4, 10), mov(5, 296),
            call(PERF_OUTPUT), EXIT]
    assert scan(*code, maps={1: "events"}) == [("bpf_perf_event_output", "events", 296)]


def test_values_copied_between_registers_are_followed():
    code = [mov(6, 40), ld_map(7), insn(0xBF, 1, 7), insn(0xBF, 3, 6), call(RINGBUF_OUTPUT),
            EXIT]
    assert scan(*code, maps={1: "rb"}) == [("bpf_ringbuf_output", "rb", 40)]


def test_a_call_forgets_the_caller_saved_registers():
    code = [ld_map(1), mov(2, 16), call(1), call(RESERVE), EXIT]
    assert scan(*code, maps={0: "events"}) == [("bpf_ringbuf_reserve", None, None)]


def test_a_computed_size_is_unknown():
    code = [ld_map(1), mov(2, 16), insn(0x07, 2, imm=8), call(RESERVE), EXIT]  # r2 += 8
    assert scan(*code, maps={0: "events"}) == [("bpf_ringbuf_reserve", "events", None)]


def test_paths_that_agree_keep_their_values():
    # r2 = 32; if r0 == 0 goto L; r3 = 1; L: r1 = &events; call reserve
    code = [mov(2, 32), insn(0x15, 0, off=1), mov(3, 1), ld_map(1), call(RESERVE), EXIT]
    assert scan(*code, maps={3: "events"}) == [("bpf_ringbuf_reserve", "events", 32)]


def test_paths_that_disagree_lose_the_value():
    # if r0 == 0 goto L; r2 = 32; goto M; L: r2 = 64; M: r1 = &events; call reserve
    code = [insn(0x15, 0, off=2), mov(2, 32), insn(0x05, off=1), mov(2, 64), ld_map(1),
            call(RESERVE), EXIT]
    assert scan(*code, maps={4: "events"}) == [("bpf_ringbuf_reserve", "events", None)]


def test_a_loop_head_forgets_everything():
    # r2 = 8; L: r1 = &events; call reserve; if r0 != 0 goto L
    code = [mov(2, 8), ld_map(1), call(RESERVE), insn(0x55, 0, off=-4), EXIT]
    assert scan(*code, maps={1: "events"}) == [("bpf_ringbuf_reserve", "events", None)]


def test_big_endian_objects():
    data = struct.pack(">BBhi", 0x18, 1 << 4, 0, 0) + bytes(8) \
        + struct.pack(">BBhi", 0xB7, 2 << 4, 0, 24) + struct.pack(">BBhi", 0x85, 0, 0, RESERVE)
    assert eventtypes._scan(data, {0: "events"}, True) == [("bpf_ringbuf_reserve", "events", 24)]


def test_not_an_elf_object():
    with pytest.raises(Exception, match="not a BPF object"):
        eventtypes.output_sites(b"not an ELF file at all, just some bytes....")


# -- guessing, with a stand-in for the object's BTF ---------------------------------------

U32 = Int(1, "u32", 4)
CHAR = Int(2, "char", 1, signed=True, is_char=True)


def struct_(tid: int, name: str, size: int) -> Struct:
    return Struct(tid, name, size, (Member("a", U32, 0),))


class FakeBtf:
    def __init__(self, *types: Struct) -> None:
        self.types = types

    def named_structs(self):
        return iter(self.types)


@pytest.fixture
def no_kernel_types(monkeypatch):
    monkeypatch.setattr(eventtypes, "_kernel_has", lambda name, is_union: name == "trace_entry")


def test_guess_by_size(no_kernel_types):
    btf = FakeBtf(struct_(10, "key_t", 8), struct_(11, "event", 48), struct_(12, "other", 48))
    sites = [OutputSite("tp/x", "bpf_perf_event_output", "events", 48)]
    g = eventtypes.guess_event_type(btf, "events", sites)
    assert g.type.name == "event"
    assert g.reason == "48 bytes, the size given to bpf_perf_event_output"
    assert g.others == ("struct other",)


def test_guess_skips_map_keys_kernel_types_and_flavors(no_kernel_types):
    btf = FakeBtf(struct_(10, "trace_entry", 8), struct_(11, "task_struct___x", 8),
                  struct_(12, "group_key", 8))
    sites = [OutputSite("tp/x", "bpf_perf_event_output", "raw", 8)]
    assert eventtypes.guess_event_type(btf, "raw", sites, exclude={12}) is None


def test_the_tools_own_types_rank_first(no_kernel_types):
    btf = FakeBtf(struct_(10, "data_t", 16), struct_(11, "sample", 16))
    sites = [OutputSite("tp/x", "bpf_ringbuf_reserve", "rb", 16)]
    assert eventtypes.guess_event_type(btf, "rb", sites).type.name == "data_t"
    g = eventtypes.guess_event_type(btf, "rb", sites, prefer=["struct sample"])
    assert g.type.name == "sample" and g.others == ()


def test_the_largest_size_wins_and_unknown_maps_count_when_alone(no_kernel_types):
    btf = FakeBtf(struct_(10, "small_event", 8), struct_(11, "big_event", 32))
    sites = [OutputSite("a", "bpf_ringbuf_output", None, 8),
             OutputSite("b", "bpf_ringbuf_output", "rb", 32)]
    g = eventtypes.guess_event_type(btf, "rb", sites)
    assert g.type.name == "big_event" and "largest of 8, 32" in g.reason
    # With two event maps, a call whose map is unknown says nothing of this one.
    g = eventtypes.guess_event_type(btf, "rb", sites[:1], event_maps=2)
    assert g.type.name == "small_event" and g.reason.startswith("its name; no call")


def test_without_a_size_only_names_that_say_event(no_kernel_types):
    btf = FakeBtf(struct_(10, "args_t", 16), struct_(11, "event", 300))
    sites = [OutputSite("a", "bpf_perf_event_output", "events", None)]
    g = eventtypes.guess_event_type(btf, "events", sites)
    assert g.type.name == "event" and "not a constant" in g.reason


# -- keeping types in BTF ------------------------------------------------------------------

HEADER = """
/* struct not_this { int x; }; */
struct event {
    int pid;
};
typedef struct event event_t;
struct task_struct___x { int __state; } __attribute__((preserve_access_index));
union value __attribute__((aligned(8))) { int i; long l; };
static struct hist zero;   // a use, not a definition
"""


def test_defined_structs():
    assert eventtypes.defined_structs([HEADER, "struct hist { int slots[4]; };"]) == [
        "struct event", "union value", "struct hist"]


def test_keep_types_source():
    src = eventtypes.keep_types_source(["struct event", "union  value", "enum e", "u32",
                                        "struct event"])
    assert "struct event;\nunion value;\n" in src
    assert (f"__attribute__((used)) static void {eventtypes.KEEPER}"
            "(struct event *t0 __attribute__((unused)), "
            "union value *t1 __attribute__((unused))) {}") in src
    assert eventtypes.keep_types_source(["enum e"]) == ""


# -- alternatives ------------------------------------------------------------------------------

class Prog:
    def __init__(self, name: str, section: str) -> None:
        self.name, self.section = name, section
        self.kind, _, self.target = section.partition("/")


def test_alternative_groups():
    progs = [Prog("sched_switch", "tp_btf/sched_switch"),
             Prog("handle_sched_switch", "raw_tp/sched_switch"),
             Prog("tp_switch", "tracepoint/sched/sched_switch"),
             Prog("wakeup", "tp_btf/sched_wakeup"),  # alone: not a choice
             Prog("open_entry", "kprobe/do_sys_openat2"),
             Prog("open_entry_fentry", "fentry/do_sys_openat2"),
             Prog("open_exit", "kretprobe/do_sys_openat2"),
             Prog("two_a", "tp_btf/block_rq_issue"), Prog("two_b", "tp_btf/block_rq_issue"),
             Prog("two_raw", "raw_tp/block_rq_issue"),
             Prog("offset", "kprobe/do_sys_openat2+4"),
             Prog("perf", "perf_event")]
    assert lcc_run.alternative_groups(progs) == [
        [("sched_switch",), ("handle_sched_switch",), ("tp_switch",)],
        [("open_entry_fentry",), ("open_entry",)],
        [("two_a", "two_b"), ("two_raw",)],
    ]


# -- arguments -----------------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    p = lcc_run.configure_parser(argparse.ArgumentParser(exit_on_error=False))
    return p.parse_args(["prog.bpf.c", *argv])


def test_run_arguments():
    a = parse("--event-type", "events=struct  event", "--event-type", "rb=data_t",
              "--map-size", "start=4096", "--map-size", "stacks=0x400", "-F", "99")
    assert dict(a.event_types) == {"events": "struct event", "rb": "data_t"}
    assert dict(a.map_sizes) == {"start": 4096, "stacks": 1024}
    assert a.frequency == 99
    assert parse().frequency == lcc_run.DEFAULT_FREQUENCY


@pytest.mark.parametrize("argv", [["--event-type", "events"], ["--event-type", "=struct e"],
                                  ["--event-type", "e=struct a b"], ["--map-size", "m=0"],
                                  ["--map-size", "m=x"], ["-F", "0"]])
def test_bad_run_arguments(argv, capsys):
    p = lcc_run.configure_parser(argparse.ArgumentParser())
    with pytest.raises(SystemExit):
        p.parse_args(["prog.bpf.c", *argv])
    assert "expected" in capsys.readouterr().err


# -- display of libbpf-tools' struct hist -------------------------------------------------------

class FakeMap:
    name = "hists"


def test_slots_member():
    hist = Struct(5, "hist", 120, (Member("slots", Array(6, "", U32, 26), 0),
                                   Member("comm", Array(7, "", CHAR, 16), 26 * 32)))
    assert show._slots_member(hist) == "slots"
    assert show._slots_member(struct_(8, "event", 4)) is None


def test_values_with_slots_print_as_histograms():
    items = [(7, {"slots": [0, 2, 1] + [0] * 23, "comm": "bash"}),
             (9, {"slots": [5] + [0] * 25, "comm": ""}),
             (11, {"slots": [0] * 26, "comm": "idle"})]  # empty: left out
    out = io.StringIO()
    show._dump_slot_values(FakeMap(), items, out, False)
    text = out.getvalue()
    assert text.startswith("@hists[9]:\n")  # the largest total first
    assert "@hists[7, comm=bash]:\n" in text and "@hists[11" not in text
    assert "         2 -> 3          : 2        |****************************************|" in text
    out = io.StringIO()
    show._dump_slot_values(FakeMap(), items, out, True)
    rec = json.loads(out.getvalue())
    assert rec["kind"] == "hists" and [h["key"] for h in rec["hists"]] == [9, 7]
    assert rec["hists"][1]["value"] == {"comm": "bash"}
    assert rec["hists"][1]["hist"]["total"] == 3
