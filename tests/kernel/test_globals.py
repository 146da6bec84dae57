"""Global variables: .rodata knobs set before load, .bss and .data both ways.

tests/progs/globals.bpf.c counts getppid() calls of `target_pid` by `step`
and copies what Python wrote into variables Python reads back.
"""

from __future__ import annotations

import os

import pytest

from lcc import ClosedError, LccError

from kutil import trigger

pytestmark = pytest.mark.bpf


def test_rodata_set_before_load_filters_in_the_kernel(load):
    mine = load("globals.bpf.c", rodata={"target_pid": os.getpid(), "step": 5})
    other = load("globals.bpf.c", rodata={"target_pid": 1})  # init never calls getppid here
    assert mine.rodata.target_pid == os.getpid() and mine.rodata.step == 5
    trigger()
    trigger()
    assert mine.bss.hits == 10
    assert other.bss.hits == 0


def test_rodata_knobs_of_every_width_reach_the_kernel(load):
    big = (1 << 40) + 3  # needs all 8 bytes of the u64
    tool = load("globals.bpf.c", load=False)
    tool.rodata.step = big
    tool.rodata["target_pid"] = os.getpid()
    with pytest.raises(OverflowError, match=r"'target_pid'.*4 bytes"):
        tool.rodata.target_pid = 1 << 32
    with pytest.raises(OverflowError, match="'step'"):
        tool.rodata.step = -1
    with pytest.raises(AttributeError, match=r"no variable 'stepp'.*step"):
        tool.rodata.stepp = 1
    tool.load()
    tool.attach_all()
    trigger()
    assert tool.bss.hits == big
    assert tool.rodata.target_pid == os.getpid() and tool.rodata.step == big


def test_rodata_char_array_and_split_lifecycle(load):
    tool = load("globals.bpf.c", load=False)
    assert tool.rodata.label == "none"  # the initial value, before load
    tool.rodata.target_pid = os.getpid()
    tool.rodata["label"] = "late"
    tool.load()
    tool.attach_all()
    trigger()
    assert tool.bss.seen_label == "late"
    assert tool.rodata.to_dict() == {"target_pid": os.getpid(), "step": 1, "label": "late"}


def test_rodata_is_read_only_after_load(load):
    tool = load("globals.bpf.c")
    with pytest.raises(LccError, match=r"\.rodata is read-only after load"):
        tool.rodata.step = 3
    assert tool.rodata.step == 1


def test_bss_counters_read_and_written(load):
    tool = load("globals.bpf.c")
    assert tool.bss.hits == 0 and tool.bss.seen_value == 0
    tool.bss.py_value = 0xABCDEF0123
    trigger()
    assert tool.bss.hits == 1
    assert tool.bss.seen_value == 0xABCDEF0123  # the program saw what Python wrote
    tool.bss.hits = 100  # Python resets a counter the program keeps adding to
    trigger()
    assert tool.bss.hits == 101
    assert set(tool.bss.names()) >= {"hits", "py_value", "seen_value", "seen_label"}


def test_data_initialised_and_shared(load):
    tool = load("globals.bpf.c")
    assert tool.data.data_val == 42
    assert tool.data.data_cfg.to_dict() == {"a": 7, "name": "init"}
    trigger()
    assert tool.bss.data_seen == 42 and tool.bss.cfg_a_seen == 7
    tool.data.data_val = 99
    tool.data.data_cfg = {"a": 3, "name": "new"}
    trigger()
    assert tool.bss.data_seen == 99 and tool.bss.cfg_a_seen == 3
    assert tool.data.data_cfg.name == "new"


def test_unknown_variable_names_the_ones_there(load):
    tool = load("globals.bpf.c")
    with pytest.raises(AttributeError, match="py_value"):
        tool.bss.nope
    with pytest.raises(LccError, match=r"no \.kconfig variables"):
        tool.obj.section(".kconfig")


def test_globals_after_close(load):
    tool = load("globals.bpf.c")
    bss = tool.bss
    tool.close()
    with pytest.raises(ClosedError):
        bss.hits
    with pytest.raises(ClosedError):
        tool.bss
