"""ClbcBase's configuration pieces that need no kernel: fallbacks, attach policy.

(pyLCC's ``env`` defines are parsed by lcc.compile.defines: tests/unit/test_defines.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lcc import Fallback
from lcc.base import _as_fallbacks
from lcc.links import needs_explicit_attach


def test_fallback_alternatives():
    fb = Fallback("fentry_x", ("kprobe_x", "kretprobe_x"), "tp_x")
    assert fb.alternatives == [("fentry_x",), ("kprobe_x", "kretprobe_x"), ("tp_x",)]
    assert fb.names() == {"fentry_x", "kprobe_x", "kretprobe_x", "tp_x"}
    assert fb.chosen is None and fb.skipped == [] and fb.rejected == {}
    assert repr(fb) == "Fallback(fentry_x, kprobe_x+kretprobe_x, tp_x)"
    with pytest.raises(ValueError):
        Fallback()


def test_fallback_forms_accepted_by_clbcbase():
    fb = Fallback("a", "b")
    assert _as_fallbacks(None, copy=False) == []
    assert _as_fallbacks(fb, copy=False) == [fb]
    assert _as_fallbacks([fb, fb], copy=False) == [fb, fb]
    (one,) = _as_fallbacks(["a", "b"], copy=False)  # one list of alternatives
    assert one.alternatives == [("a",), ("b",)]


def test_fallback_declared_on_the_class_is_copied_per_instance():
    fb = Fallback("a", "b")
    fb.rejected[("a",)] = "refused"
    (copy,) = _as_fallbacks(fb, copy=True)
    assert copy is not fb
    assert copy.alternatives == fb.alternatives
    assert copy.rejected == {} and copy.chosen is None


def prog(section: str):
    kind, _, target = section.partition("/")
    return SimpleNamespace(section=section, kind=kind, target=target)


@pytest.mark.parametrize("section, explicit", [
    ("tracepoint/syscalls/sys_enter_openat", False),
    ("tracepoint", True),
    ("tp", True),
    ("raw_tp/sys_enter", False),
    ("raw_tp", True),
    ("tp_btf/sched_switch", False),
    ("kprobe/do_sys_open", False),
    ("kprobe", True),
    ("uprobe", True),
    ("uprobe/libc.so.6", True),
    ("uprobe//bin/bash:readline", False),
    ("uretprobe.s", True),
    ("xdp", True),
    ("xdp.frags", True),
    ("cgroup_skb/egress", True),
    ("cgroup/connect4", True),
    ("perf_event", True),
    ("socket", True),
    ("tc", True),
    ("iter/task", False),
    ("fentry/tcp_v4_connect", False),
    ("lsm/file_open", False),
])
def test_which_programs_attach_by_section_name(section, explicit):
    assert needs_explicit_attach(prog(section)) is explicit
