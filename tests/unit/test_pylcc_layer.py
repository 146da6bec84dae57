"""The pyLCC layer's pure parts: showHist's rows, server names, constants, user symbols.

User symbols are read from this very process (its /proc/self/maps and the
libc it has mapped), so no privileges are needed.
"""

from __future__ import annotations

import ctypes
import os

import pytest

from lcc.compat import service_url
from lcc.hist import render_pylcc
from lcc.procsyms import ProcessSymbols, read_exec_mappings
from lcc.symbols import ElfSymbols


def test_hist2_rows_from_first_to_last_slot():
    counts = [0] * 64
    counts[1], counts[3], counts[10], counts[20] = 2, 1500, 1, 1
    rows = render_pylcc(counts, columns=40).splitlines()
    assert [r[:16] for r in rows] == [
        "[2,4)       2   ", "[4,8)       0   ", "[8,16)      1K  ", "[16,32)     0   ",
        "[32,64)     0   ", "[64,128)    0   ", "[128,256)   0   ", "[256,512)   0   ",
        "[512,1K)    0   ", "[1K,2K)     1   ", "[2K,4K)     0   ", "[4K,8K)     0   ",
        "[8K,16K)    0   ", "[16K,32K)   0   ", "[32K,64K)   0   ", "[64K,128K)  0   ",
        "[128K,256K) 0   ", "[256K,512K) 0   ", "[512K,1M)   0   ", "[1M,2M)     1   "]
    assert all(len(r) == 40 for r in rows)
    # the bar is the slot's share of the total: 22 columns, 1500/1503 of them
    assert rows[2][16:] == "|" + "@" * 21 + " |"


def test_hist2_slot_zero_holds_zero_and_one():
    assert render_pylcc([5], columns=30).startswith("[0,2)       5   |@@@@@@@@@@@@|")


def test_hist10_rows():
    counts = [0] * 20
    counts[0], counts[2], counts[7] = 3, 1, 1
    rows = [r[:16].rstrip() for r in render_pylcc(counts, base=10, columns=40).splitlines()]
    assert rows == ["[0,10)      3", "[10,100)    0", "[100,1K)    1", "[1K,10K)    0",
                    "[10K,100K)  0", "[100K,1M)   0", "[1M,10M)    0", "[10M,100M)  1"]


def test_empty_histogram_raises_as_pylcc_does():
    with pytest.raises(ValueError, match="The input list is empty or all zero."):
        render_pylcc([0] * 64)
    with pytest.raises(ValueError, match="log2 or log10"):
        render_pylcc([1], base=8)


@pytest.mark.parametrize("given, url", [
    (None, None), ("", None),
    ("http://build:8000", "http://build:8000"), ("https://build", "https://build"),
    ("buildhost", "http://buildhost:7655"), ("buildhost:8000", "http://buildhost:8000"),
    ("10.0.0.7", "http://10.0.0.7:7655"), ("[::1]", "http://[::1]:7655"),
    ("[::1]:9000", "http://[::1]:9000"),
])
def test_pylcc_server_names(given, url):
    assert service_url(given) == url


def test_perf_constants_are_the_kernels():
    from pylcc import perfEvent as pe
    assert (pe.PerfType.SOFTWARE, pe.PerfType.BREAKPOINT) == (1, 5)
    assert pe.PerfSwConfig.CPU_CLOCK == pe.PerfSwIds.CPU_CLOCK == 0
    assert pe.PerfHwConfig is pe.PerfHWConfig and pe.PerfHwConfig.REF_CPU_CYCLES == 9
    assert (pe.PerfBreakPointType.R, pe.PerfBreakPointType.W, pe.PerfBreakPointType.X) == (1, 2, 4)
    assert pe.PerfFlag.FD_CLOEXEC == 8
    assert (pe.PERF_ATTR_SIZE_VER5, pe.PERF_ATTR_SIZE_VER7) == (112, 128)
    assert pe.PerfEventSampleFormat.READ == 1 << 4


def _libc_function(name: str) -> int:
    return ctypes.cast(getattr(ctypes.CDLL(None), name), ctypes.c_void_p).value


def test_process_symbols_name_an_address_of_this_process():
    addr = _libc_function("getpid")
    sym = ProcessSymbols(os.getpid()).resolve(addr + 2)
    assert sym is not None and sym.offset == 2
    assert sym.name.lstrip("_") in ("getpid", "libc_getpid")
    assert os.path.basename(sym.path).startswith("libc")
    assert ProcessSymbols(os.getpid()).format(8) == "0x8"  # not mapped: hex


def test_elf_symbol_at_is_the_reverse_of_offset():
    sym = ProcessSymbols(os.getpid()).resolve(_libc_function("getpid"))
    assert any(m.path == sym.path for m in read_exec_mappings(os.getpid()))
    elf = ElfSymbols(sym.path)
    target = elf.lookup("getpid")
    found, off = elf.symbol_at(target.offset + 1)
    assert (found.offset, off) == (target.offset, 1)
    assert elf.symbol_at(0) is None  # the ELF header is no function


def test_ustack_dump_in_pylcc_format():
    from pylcc.lbcStack import ClbcUstack
    addr = _libc_function("getpid")
    frames = ClbcUstack(os.getpid(), [addr, 8, 0, addr]).dumpStacks()
    assert len(frames) == 2 and frames[1] == "0x8"  # stops at the first zero
    assert frames[0].endswith("getpid + 0x0")
    assert ClbcUstack(os.getpid(), None).dumpStacks() == []  # getArr() said: no such stack
