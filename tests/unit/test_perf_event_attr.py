"""struct perf_event_attr as lcc encodes it, and pyLCC's attribute dict.

The expected bytes come from a ctypes mirror of the kernel's struct
(include/uapi/linux/perf_event.h, bit fields included), written out here
independently of lcc's offset table.
"""

from __future__ import annotations

import ctypes
import struct

import pytest

from lcc.compat import perf_attr_from_dict
from lcc.links import PERF_ATTR_SIZE, perf_event_attr

u32, u64 = ctypes.c_uint32, ctypes.c_uint64

_BITS = ["disabled", "inherit", "pinned", "exclusive", "exclude_user", "exclude_kernel",
         "exclude_hv", "exclude_idle", "mmap", "comm", "freq", "inherit_stat",
         "enable_on_exec", "task", "watermark"]
_BITS2 = ["mmap_data", "sample_id_all", "exclude_host", "exclude_guest",
          "exclude_callchain_kernel", "exclude_callchain_user", "mmap2", "comm_exec",
          "use_clockid", "context_switch", "write_backward", "namespaces", "ksymbol",
          "bpf_event", "aux_output", "cgroup", "text_poke", "build_id", "inherit_thread",
          "remove_on_exec", "sigtrap"]


class KernelAttr(ctypes.Structure):
    _fields_ = ([("type", u32), ("size", u32), ("config", u64), ("sample_period", u64),
                 ("sample_type", u64), ("read_format", u64)]
                + [(n, u64, 1) for n in _BITS] + [("precise_ip", u64, 2)]
                + [(n, u64, 1) for n in _BITS2] + [("reserved_1", u64, 26)]
                + [("wakeup_events", u32), ("bp_type", u32), ("bp_addr", u64), ("bp_len", u64),
                   ("branch_sample_type", u64), ("sample_regs_user", u64),
                   ("sample_stack_user", u32), ("clockid", ctypes.c_int32),
                   ("sample_regs_intr", u64), ("aux_watermark", u32),
                   ("sample_max_stack", ctypes.c_uint16), ("reserved_2", ctypes.c_uint16),
                   ("aux_sample_size", u32), ("reserved_3", u32), ("sig_data", u64)])


def kernel_bytes(**fields) -> bytes:
    a = KernelAttr(size=ctypes.sizeof(KernelAttr))
    for k, v in fields.items():
        setattr(a, k, v)
    return bytes(a)


def test_mirror_is_the_size_lcc_sends():
    assert ctypes.sizeof(KernelAttr) == PERF_ATTR_SIZE == 128


def test_hardware_breakpoint_attr():
    addr = 0x7F12_3456_7890
    raw = perf_event_attr(5, 0, sample_period=1, precise_ip=2, wakeup_events=1,
                          bp_type=2, bp_addr=addr, bp_len=8)
    assert raw == kernel_bytes(type=5, sample_period=1, precise_ip=2, wakeup_events=1,
                               bp_type=2, bp_addr=addr, bp_len=8)
    # the fields a breakpoint needs, where perf_event_open(2) reads them
    assert struct.unpack_from("=IIQQ", raw, 0) == (5, 128, 0, 1)
    assert struct.unpack_from("=IIQQ", raw, 48) == (1, 2, addr, 8)
    assert struct.unpack_from("=Q", raw, 40)[0] == 2 << 15  # precise_ip, bits 15-16


def test_sample_freq_sets_the_freq_bit():
    raw = perf_event_attr(1, 0, sample_freq=99, inherit=True, exclude_kernel=1)
    assert raw == kernel_bytes(type=1, sample_period=99, freq=1, inherit=1, exclude_kernel=1)
    assert struct.unpack_from("=Q", raw, 40)[0] == (1 << 10) | (1 << 1) | (1 << 5)
    # a period leaves freq off
    assert struct.unpack_from("=Q", perf_event_attr(1, 0, sample_period=1000), 40)[0] == 0


def test_every_flag_bit_lands_where_the_kernel_has_it():
    for name in _BITS + _BITS2:
        assert perf_event_attr(1, **{name: 1}) == kernel_bytes(type=1, **{name: 1}), name


def test_mistakes_are_refused():
    with pytest.raises(TypeError, match="no field 'bp_adr'"):
        perf_event_attr(5, bp_adr=1)
    with pytest.raises(TypeError, match="not both"):
        perf_event_attr(1, sample_period=1, sample_freq=2)
    with pytest.raises(TypeError, match="share a union"):
        perf_event_attr(5, bp_addr=1, config1=2)
    with pytest.raises(ValueError, match="precise_ip must be 0..3"):
        perf_event_attr(0, precise_ip=4)
    with pytest.raises(ValueError, match="does not fit"):
        perf_event_attr(5, bp_type=1 << 32)


def test_pylcc_dict_becomes_keyword_arguments():
    d = {"type": 5, "size": 114, "sample_period": 1, "precise_ip": 2, "wakeup_events": 1,
         "bp_type": 2, "bp_addr": "0x1000", "bp_len": "8"}
    kw = perf_attr_from_dict(d)
    assert kw == {"event_type": 5, "sample_period": 1, "precise_ip": 2, "wakeup_events": 1,
                  "bp_type": 2, "bp_addr": 0x1000, "bp_len": 8}  # size is lcc's to set
    freq = perf_attr_from_dict({"sample_freq": 1000, "freq": 1, "type": 1, "config": 0})
    assert perf_event_attr(**freq) == kernel_bytes(type=1, sample_period=1000, freq=1)
    with pytest.raises(ValueError, match="need a 'type'"):
        perf_attr_from_dict({"config": 0})
    with pytest.raises(ValueError, match="'bp_len': 'eight' is not a number"):
        perf_attr_from_dict({"type": 5, "bp_len": "eight"})
