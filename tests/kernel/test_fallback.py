"""Program selection and the Fallback chain, against what this kernel really has.

tests/progs/fallback.bpf.c offers fentry, kprobe and tracepoint programs for
one job (a TCP connect), and a second job whose first alternative the
verifier rejects.  `which` in .bss says which program ran.
"""

from __future__ import annotations

import os
import socket

import pytest

from lcc import ClbcBase, Fallback, LccError, NotSupported, ProgramLoadError, features
from lcc.spec import ObjectSpec

from kutil import trigger

pytestmark = pytest.mark.bpf

CONNECT_JOB = ("fentry_connect", "kprobe_connect", "tp_state")
GETPPID_JOB = ("getppid_bad", "getppid_good")


def tcp_connect() -> None:
    """One TCP connect from this process to a listener on 127.0.0.1."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()):
            pass


def test_fallback_picks_the_tracepoint_here(load):
    if features.has_kprobes() or features.can_load_tracing("fentry", "tcp_v4_connect"):
        pytest.skip("this kernel runs fentry or kprobes: the tracepoint is not the only choice")
    fb = Fallback(*CONNECT_JOB)
    tool = load("fallback.bpf.c", programs=list(CONNECT_JOB), fallback=fb)
    assert fb.chosen == ("tp_state",)
    assert tool.chosen() == ["tp_state"]
    reasons = dict(fb.skipped)
    assert "fentry" in reasons[("fentry_connect",)]
    assert "kprobes" in reasons[("kprobe_connect",)]
    assert [p.name for p in tool.obj.programs.values() if p.fd >= 0] == ["tp_state"]
    tcp_connect()
    assert (tool.bss.which, tool.bss.hits) == (3, 1)


def test_fallback_declared_on_the_class(prog_object):
    class Connects(ClbcBase):
        fallback = Fallback(*CONNECT_JOB)

    with Connects("fallback", obj=prog_object("fallback.bpf.c"), programs=list(CONNECT_JOB),
                  rodata={"target_pid": os.getpid()}) as tool:
        assert tool.chosen() == ["tp_state"]
        tcp_connect()
        assert tool.bss.which == 3


def test_verifier_rejection_reopens_and_moves_on(load):
    fb = Fallback(*GETPPID_JOB)
    tool = load("fallback.bpf.c", programs=list(GETPPID_JOB), fallback=fb)
    assert fb.chosen == ("getppid_good",)
    assert "invalid mem access" in fb.rejected[("getppid_bad",)]
    assert ("getppid_bad",) in dict(fb.skipped)
    trigger()
    assert (tool.bss.which, tool.bss.hits) == (5, 1)


class _FentryOptimist(features.Probes):
    """Probes that say yes to every fentry program."""

    def probe_section(self, section):
        if section.startswith("fentry/"):
            return features.ProbeResult(True)
        return super().probe_section(section)


def test_eperm_at_load_after_a_passing_probe(load):
    """A kernel whose probe says yes to fentry but whose load says EPERM."""
    fb = Fallback(*CONNECT_JOB)
    tool = load("fallback.bpf.c", programs=list(CONNECT_JOB), fallback=fb,
                probes=_FentryOptimist())
    if fb.rejected == {}:
        pytest.skip("fentry programs load on this kernel")
    assert fb.chosen == ("tp_state",)
    why = fb.rejected[("fentry_connect",)]
    assert "fentry_connect" in why and "not permitted" in why
    assert "kprobes" in dict(fb.skipped)[("kprobe_connect",)]
    tcp_connect()
    assert tool.bss.which == 3


def test_every_alternative_fails_names_each_reason(load):
    with pytest.raises(NotSupported) as ei:
        load("fallback.bpf.c", programs=["fentry_connect", "kprobe_connect"],
             fallback=Fallback("fentry_connect", "kprobe_connect"))
    msg = str(ei.value)
    assert "fentry_connect" in msg and "kprobe_connect" in msg and "kprobes" in msg


def test_fallback_naming_a_missing_program(load):
    with pytest.raises(LccError, match="nope"):
        load("fallback.bpf.c", fallback=Fallback("tp_state", "nope"))


def test_select_programs_by_name(load):
    tool = load("fallback.bpf.c", programs=["getppid_good"])
    loaded = {n for n, p in tool.obj.programs.items() if p.fd >= 0}
    assert loaded == {"getppid_good"}
    assert [lk.program.name for lk in tool.links] == ["getppid_good"]
    trigger()
    assert tool.bss.which == 5


def test_select_programs_by_predicate(load):
    tool = load("fallback.bpf.c", programs=lambda p: p.kind == "tracepoint" and "good" in p.name)
    assert [n for n, p in tool.obj.programs.items() if p.autoload] == ["getppid_good"]
    assert tool.obj.programs["tp_state"].fd < 0


def test_select_unknown_program(load):
    with pytest.raises(LccError, match="no program named nope"):
        load("fallback.bpf.c", programs=["nope"])


def test_choices_made_before_load_survive_a_rejected_alternative(prog_object):
    """The step API (load=False -> configure -> load()): the verifier rejects the
    first alternative, and every earlier choice still holds in what is loaded."""
    fb = Fallback(*GETPPID_JOB)
    tool = ClbcBase("fallback", obj=prog_object("fallback.bpf.c"), programs=list(GETPPID_JOB),
                    fallback=fb, load=False)
    try:
        tool.rodata.target_pid = os.getpid()
        tool.spec.resize_map("vals", 64)
        tool.load()
        tool.attach_all()
        assert ("getppid_bad",) in fb.rejected and fb.chosen == ("getppid_good",)
        assert tool.rodata.target_pid == os.getpid()
        assert tool.maps["vals"].max_entries == 64
        assert tool.spec.values[".rodata"] and tool.spec.map_sizes == {"vals": 64}
        trigger()
        assert (tool.bss.which, tool.bss.hits) == (5, 1)
    finally:
        tool.close()


def test_a_spec_loads_again_after_a_rejection_and_twice(prog_object):
    """A spec is inert: a failed load leaves it as it was, and each load makes
    an independent live object with the same choices."""
    spec = ObjectSpec(prog_object("fallback.bpf.c"), name="fallback")
    try:
        spec.select(["getppid_bad"])
        spec.section(".rodata").target_pid = os.getpid()
        spec.resize_map("vals", 32)
        with pytest.raises(ProgramLoadError, match="invalid mem access"):
            spec.load()
        spec.select(["getppid_good"])
        first, second = spec.load(), spec.load()
        try:
            for obj in (first, second):
                assert obj.loaded and obj.section(".rodata").target_pid == os.getpid()
                assert obj.map_spec("vals").max_entries == 32
                assert obj.programs["getppid_good"].fd >= 0 > obj.programs["getppid_bad"].fd
            assert first.programs["getppid_good"].id != second.programs["getppid_good"].id
        finally:
            first.close()
            second.close()
        assert spec.section(".rodata").target_pid == os.getpid()  # the spec is still usable
    finally:
        spec.close()
