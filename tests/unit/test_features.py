"""Feature probes over a fake host: what they answer, that they cache, that they never mount."""

from __future__ import annotations

import pytest

from lcc import LccError, features, links
from lcc.errors import BtfError
from lcc.features import Probes, ProbeResult

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe/type"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe/type"
TRACING = "/sys/kernel/tracing"


class FakeBtf:
    def __init__(self, ids):
        self.ids = ids

    def find(self, name, kind):
        t = self.ids.get(name)
        return None if t is None else type("T", (), {"id": t})()


class FakeHost:
    """A machine made of a set of paths; records every look, load and mount."""

    def __init__(self, paths=(), kallsyms=(), btf=None, load_errno=0, privileged=True):
        self.paths = set(paths)
        self.kallsyms = list(kallsyms)
        self.btf = btf  # {name: id}, or None: no kernel BTF
        self.load_errno = load_errno
        self._privileged = privileged
        self.looked, self.loads, self.mounts = [], [], []

    def exists(self, path):
        self.looked.append(path)
        return path in self.paths

    def read_lines(self, path):
        if path != "/proc/kallsyms":
            raise FileNotFoundError(path)
        return [f"ffffffff81000000 T {name}\n" for name in self.kallsyms]

    def vmlinux_btf(self):
        if self.btf is None:
            raise BtfError("this kernel has no BTF")
        return FakeBtf(self.btf)

    def load_program(self, prog_type, *, expected_attach_type=0, attach_btf_id=0):
        self.loads.append((prog_type, expected_attach_type, attach_btf_id))
        return self.load_errno, ""

    def probe_type(self, what, value):
        return 1 if value in (1, 2, 5) else 0

    def libbpf_version(self):
        return (1, 4)

    def privileged(self):
        return self._privileged

    def mount(self, fstype, target):
        self.mounts.append((fstype, target))
        self.paths.add(f"{target}/events")
        return True


def test_no_probe_mounts_tracefs_when_it_is_missing():
    host = FakeHost(paths={TRACING, "/sys/kernel/btf/vmlinux"}, kallsyms=["tcp_v4_connect"],
                    btf={"do_sys_openat2": 7, "btf_trace_sched_switch": 8, "bpf_lsm_file_open": 9})
    p = Probes(host)
    assert p.tracefs_dir() is None and not p.tracefs_mounted()
    assert p.has_kprobes() is False
    assert p.tracepoint_exists("sched", "sched_switch") is None  # cannot tell
    assert p.summary()["tracefs"].startswith("missing (tracefs is not mounted")
    for section in ("tracepoint/sched/sched_switch", "kprobe/tcp_v4_connect", "uprobe",
                    "raw_tp/sched_switch", "fentry/do_sys_openat2", "lsm/file_open"):
        p.probe_section(section)
    p.can_load_tp_btf()
    p.prog_types()
    p.map_types()
    assert host.mounts == []


def test_mount_tracefs_is_the_one_that_mounts_and_it_refreshes_the_answers():
    host = FakeHost(paths={TRACING, f"{TRACING}/events/sched/sched_switch"})
    p = Probes(host)
    assert p.tracepoint_exists("sched", "sched_switch") is None
    assert features.mount_tracefs(p) == TRACING
    assert host.mounts == [("tracefs", TRACING)]
    assert p.tracepoint_exists("sched", "sched_switch") is True
    assert features.mount_tracefs(p) == TRACING and len(host.mounts) == 1  # mounted already


def test_mount_tracefs_needs_privileges():
    host = FakeHost(paths={TRACING}, privileged=False)
    with pytest.raises(LccError, match="tracefs is not mounted"):
        features.mount_tracefs(Probes(host))
    assert host.mounts == []


def test_answers_are_computed_once():
    host = FakeHost(paths={KPROBE_PMU})
    p = Probes(host)
    assert p.has_kprobes() and p.has_kprobes()
    assert host.looked == [KPROBE_PMU]
    p.forget()
    assert p.has_kprobes() and host.looked == [KPROBE_PMU, KPROBE_PMU]


def test_section_probes():
    p = Probes(FakeHost(paths={f"{TRACING}/events", f"{TRACING}/events/sched/here"}))
    r = p.probe_section("kprobe/tcp_v4_connect")
    assert not r and "no kprobes" in r.reason
    assert p.probe_section("tracepoint/sched/here")
    r = p.probe_section("tracepoint/sched/gone")
    assert not r and "sched/gone does not exist" in r.reason
    assert p.probe_section("socket")  # nothing to judge: assumed to work
    assert not p.probe_section("uprobe")

    p = Probes(FakeHost(paths={KPROBE_PMU}, kallsyms=["real_fn"]))
    assert p.probe_section("kprobe/real_fn")
    r = p.probe_section("kretprobe/gone_fn")
    assert not r and "gone_fn" in r.reason
    # Without tracefs a tracepoint cannot be judged: the attach (which mounts) decides.
    assert p.probe_section("tracepoint/sched/whatever")


def test_trampoline_probes_load_a_program():
    host = FakeHost(btf={"do_sys_openat2": 7}, load_errno=1)
    p = Probes(host)
    r = p.probe_section("fentry/do_sys_openat2")
    assert not r and "refuses fentry" in r.reason and "not permitted" in r.reason
    assert host.loads == [(features.PROG_TYPE_TRACING, features.ATTACH_TRACE_FENTRY, 7)]
    r = p.probe_section("fentry/nope")
    assert not r and "not in the kernel's BTF" in r.reason
    assert not Probes(FakeHost()).can_load_tp_btf()


def test_type_probes_say_unknown_without_privileges():
    assert Probes(FakeHost()).prog_types()["tracepoint"] is True
    assert Probes(FakeHost()).prog_types()["xdp"] is False
    assert Probes(FakeHost(privileged=False)).map_types()["ringbuf"] is None
    assert Probes(FakeHost(privileged=False)).map_types()["hash"] is True


def test_doctor_reports_the_probes_it_is_given(monkeypatch, tmp_path):
    from lcc.cli import doctor
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path))
    info = doctor.report(Probes(FakeHost(paths={UPROBE_PMU})))
    assert info["libbpf"] == "1.4"
    assert info["kprobes"] is False and info["uprobes"] is True
    assert info["tracepoints"].startswith("missing (tracefs is not mounted")
    assert info["program types"]["tracepoint"] is True


def test_using_replaces_the_process_wide_probes():
    p = Probes(FakeHost(paths={KPROBE_PMU}))
    with features.using(p):
        assert features.probes() is p and features.has_kprobes()
    assert features.probes() is not p


def test_tracefs_is_looked_for_only_after_a_failed_attach():
    host = FakeHost(paths={TRACING})
    p = Probes(host)
    assert links._with_tracefs(lambda: 0x2000, p) == 0x2000
    assert host.looked == [] and host.mounts == []  # attached: tracefs never looked for
    results = iter([None, 0x1000])
    assert links._with_tracefs(lambda: next(results), p) == 0x1000
    assert host.mounts == [("tracefs", TRACING)]  # mounted, then attached on the retry

    host = FakeHost(paths={f"{TRACING}/events"})
    assert links._with_tracefs(lambda: None, Probes(host)) is None  # mounted: the failure stands
    assert host.looked and host.mounts == []


def test_probe_result_is_true_when_ok():
    assert ProbeResult(True) and not ProbeResult(False, "why")
