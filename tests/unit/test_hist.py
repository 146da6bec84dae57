"""lcc.hist: histogram data, the slot convention of lbc.h, and BCC-style rendering."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lcc.hist import (
    LINEAR_MAX_BUCKETS,
    LOG2_SLOTS,
    Bucket,
    LinearHist,
    Log2Hist,
    log2_slot,
    render_sections,
    render_summary,
)

LBC_H = Path(__file__).resolve().parents[2] / "lbc_include" / "lbc.h"

SLOT_PROBES = [0, 1, 2, 3, 4, 7, 8, 15, 16, 1000, 65535, 65536, 2**31, 2**32 - 1, 2**32,
               2**32 + 1, 2**40 + 5, 2**63 - 1, 2**63, 2**64 - 1]


# ---------------------------------------------------------------- slot convention

def test_log2_slot_convention():
    assert [log2_slot(v) for v in (0, 1, 2, 3, 4, 7, 8)] == [0, 0, 1, 1, 2, 2, 3]
    assert log2_slot(2**63) == 63
    assert log2_slot(2**64 - 1) == 63
    with pytest.raises(ValueError):
        log2_slot(-1)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_log2_slot_matches_lbc_h(tmp_path):
    """Compile lbc_hist_slot() out of the real lbc.h and compare slot by slot."""
    text = LBC_H.read_text()
    start = text.index("static __always_inline u32 lbc_log2(u32 v)")
    end_marker = "return slot < LBC_HIST_SLOTS ? slot : LBC_HIST_SLOTS - 1;\n}"
    end = text.index(end_marker, start) + len(end_marker)
    src = tmp_path / "slot.c"
    src.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n"
        "typedef unsigned int u32; typedef unsigned long long u64;\n"
        "#define __always_inline inline __attribute__((always_inline))\n"
        f"#define LBC_HIST_SLOTS {LOG2_SLOTS}\n"
        + text[start:end]
        + "\nint main(int argc, char **argv) {\n"
        "  for (int i = 1; i < argc; i++)\n"
        "    printf(\"%u\\n\", lbc_hist_slot(strtoull(argv[i], NULL, 10)));\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "slot"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    rng = random.Random(5)
    values = SLOT_PROBES + [rng.getrandbits(rng.randint(1, 64)) for _ in range(200)]
    out = subprocess.run([str(exe), *map(str, values)], check=True, capture_output=True,
                         text=True).stdout.split()
    assert [int(s) for s in out] == [log2_slot(v) for v in values]


# ---------------------------------------------------------------- data

def test_from_slots_sequence_and_mapping_agree():
    seq = Log2Hist.from_slots([3, 0, 5, 0, 0])
    mapped = Log2Hist.from_slots({2: 5, 0: 3, 7: 0})
    assert seq == mapped
    assert seq.counts == (3, 0, 5)  # trailing empty slots dropped
    assert seq.total == 8


def test_buckets_follow_slot_ranges():
    hist = Log2Hist.from_slots({0: 1, 1: 2, 5: 4})
    assert hist.buckets == [
        Bucket(0, 1, 1), Bucket(2, 3, 2), Bucket(4, 7, 0), Bucket(8, 15, 0),
        Bucket(16, 31, 0), Bucket(32, 63, 4),
    ]
    assert Log2Hist.slot_range(63) == (2**63, 2**64 - 1)
    with pytest.raises(ValueError):
        Log2Hist.slot_range(64)


def test_from_values_puts_each_value_in_its_slot():
    values = [0, 1, 1, 2, 3, 4, 9, 1000, 2**40]
    hist = Log2Hist.from_values(values)
    assert hist.total == len(values)
    for bucket in hist.buckets:
        assert bucket.count == sum(bucket.low <= v <= bucket.high for v in values)


def test_invalid_slots_rejected():
    with pytest.raises(ValueError, match="negative"):
        Log2Hist.from_slots([1, -1])
    with pytest.raises(ValueError, match="out of range"):
        Log2Hist.from_slots({64: 1})
    with pytest.raises(ValueError, match="negative"):
        Log2Hist.from_slots({-1: 3})
    # an array map sized past 64 with nothing there is fine
    assert Log2Hist.from_slots([1] + [0] * 100).counts == (1,)


def test_to_dict_is_json_and_complete():
    hist = Log2Hist.from_slots({1: 2, 3: 1})
    data = json.loads(json.dumps(hist.to_dict()))
    assert data == {
        "type": "log2",
        "total": 3,
        "buckets": [
            {"low": 0, "high": 1, "count": 0},
            {"low": 2, "high": 3, "count": 2},
            {"low": 4, "high": 7, "count": 0},
            {"low": 8, "high": 15, "count": 1},
        ],
    }


def test_add_and_grouped():
    a = Log2Hist.from_slots({0: 1, 4: 2})
    b = Log2Hist.from_slots({4: 3, 6: 1})
    assert (a + b).counts == (1, 0, 0, 0, 5, 0, 1)
    groups = Log2Hist.grouped([("read", 2, 4), ("write", 0, 1), ("read", 2, 1), ("read", 3, 2)])
    assert list(groups) == ["read", "write"]
    assert groups["read"].counts == (0, 0, 5, 2)
    assert groups["write"].total == 1


def test_empty_histogram():
    hist = Log2Hist.from_slots([0, 0, 0])
    assert not hist
    assert hist.total == 0
    assert hist.buckets == []
    assert hist.render() == ""
    assert render_summary(hist, 0) == ""


# ---------------------------------------------------------------- log2 rendering

def test_render_log2_golden():
    hist = Log2Hist.from_slots({0: 1, 1: 4, 3: 2, 5: 8})
    expected = "\n".join([
        "     usecs               : count     distribution",
        "         0 -> 1          : 1        |*****                                   |",
        "         2 -> 3          : 4        |********************                    |",
        "         4 -> 7          : 0        |                                        |",
        "         8 -> 15         : 2        |**********                              |",
        "        16 -> 31         : 0        |                                        |",
        "        32 -> 63         : 8        |****************************************|",
    ])
    assert hist.render("usecs") == expected


def test_render_log2_strip_leading_zero():
    hist = Log2Hist.from_slots({3: 2, 5: 1})
    lines = hist.render("nsecs", strip_leading_zero=True).splitlines()
    assert lines[0] == "     nsecs               : count     distribution"
    assert lines[1].startswith("         8 -> 15         : 2 ")
    assert len(lines) == 4  # 8->15, 16->31 (kept: only leading zeros go), 32->63


def test_render_log2_wide_for_values_past_32_bits():
    hist = Log2Hist.from_values([5, 2**33])
    lines = hist.render("bytes").splitlines()
    assert lines[0] == "               bytes                         : count     distribution"
    assert lines[1] == f"{0:>20} -> {1:<20} : {0:<8} |{'':<20}|"
    assert lines[3] == f"{4:>20} -> {7:<20} : {1:<8} |{'*' * 20}|"
    assert lines[-1] == f"{2**33:>20} -> {2**34 - 1:<20} : {1:<8} |{'*' * 20}|"
    assert len(lines) == 1 + 34
    # the switch happens exactly where a value stops fitting in 32 bits, as in BCC
    assert Log2Hist.from_values([2**32 - 1]).render().startswith("     value  ")
    assert Log2Hist.from_values([2**32]).render().startswith("               value  ")


def _bcc_reference(counts, val_type):
    """BCC's print_log2_hist, restated: its vals[i] is our slot i-1."""
    vals = [0] + list(counts)
    idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
    val_max = max(vals)
    if idx_max <= 32:
        header, body, stars = "     %-19s : count     distribution", "%10d -> %-10d : %-8d |%-*s|", 40
    else:
        header, body, stars = ("               %-29s : count     distribution",
                               "%20d -> %-20d : %-8d |%-*s|", 20)
    out = []
    if idx_max > 0:
        out.append(header % val_type)
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        bar, j = "", 0
        while not (j > stars * vals[i] / val_max - 1 or j > stars - 1):
            bar += "*"
            j += 1
        out.append(body % (low, high, vals[i], stars, bar))
    return "\n".join(out)


def test_render_log2_matches_bcc_on_random_data():
    rng = random.Random(1)
    for _ in range(300):
        top = rng.choice([3, 10, 31, 32, 33, 63])
        counts = [rng.choice([0, 0, 1, rng.randint(0, 10**6)]) for _ in range(top + 1)]
        hist = Log2Hist.from_slots(counts)
        assert hist.render("usecs") == _bcc_reference(hist.counts, "usecs")


# ---------------------------------------------------------------- linear

def test_render_linear_golden():
    hist = LinearHist.from_slots({0: 2, 1: 8, 3: 1})
    expected = "\n".join([
        "     kbytes        : count     distribution",
        "        0          : 2        |**********                              |",
        "        1          : 8        |****************************************|",
        "        2          : 0        |                                        |",
        "        3          : 1        |*****                                   |",
    ])
    assert hist.render("kbytes") == expected


def test_linear_base_and_step():
    hist = LinearHist.from_values([100, 109, 110, 135], base=100, step=10)
    assert hist.counts == (2, 1, 0, 1)
    assert hist.buckets[0] == Bucket(100, 109, 2)
    assert hist.buckets[3] == Bucket(130, 139, 1)
    lines = hist.render("ms", strip_leading_zero=True).splitlines()
    assert lines[1].startswith("        100        : 2 ")
    assert hist.to_dict()["base"] == 100 and hist.to_dict()["step"] == 10
    with pytest.raises(ValueError):
        LinearHist.from_values([99], base=100, step=10)
    with pytest.raises(ValueError):
        LinearHist([1], step=0)
    with pytest.raises(ValueError):
        hist + LinearHist([1], base=0, step=10)
    assert (hist + hist).counts == (4, 2, 0, 2)


def test_linear_refuses_keys_that_are_not_buckets():
    # e.g. a pid-keyed map handed over by mistake must not allocate billions of rows
    with pytest.raises(ValueError, match="out of range"):
        LinearHist.from_slots({LINEAR_MAX_BUCKETS: 1})
    assert LinearHist.from_slots({LINEAR_MAX_BUCKETS - 1: 1}).total == 1


# ---------------------------------------------------------------- sections and summary

def test_render_sections_like_bcc_secondary_keys():
    hists = {"read": Log2Hist.from_slots([1]), "write": Log2Hist.from_slots([0, 2])}
    text = render_sections(hists, "usecs", section_header="syscall", section_fmt=str)
    lines = text.split("\n")
    assert lines[0] == ""
    assert lines[1] == "syscall = read"
    assert lines[2] == "     usecs               : count     distribution"
    assert lines[3].startswith("         0 -> 1          : 1 ")
    assert lines[4] == ""
    assert lines[5] == "syscall = write"
    assert len(lines) == 9


def test_render_summary_golden():
    hist = Log2Hist.from_slots({0: 1, 2: 2, 6: 1})
    expected = "\n".join([
        "       MIN -> MAX        :    PCT% TOTAL",
        "         0 -> 1          :  25.00% 1",
        "         4 -> 7          :  50.00% 2",
        "        64 -> 127        :  25.00% 1",
        "average: 21.50 usecs",
    ])
    assert render_summary(hist, 86) == expected
    assert "average" not in render_summary(hist)
    assert render_summary(hist, 86, unit="ns").endswith("average: 21.50 ns")


def test_summary_percentages_add_up():
    hist = Log2Hist.from_values(range(1, 1000))
    pcts = [float(m.group(1)) for m in re.finditer(r":\s+([\d.]+)% ", render_summary(hist))]
    assert len(pcts) == len([b for b in hist.buckets if b.count])
    assert abs(sum(pcts) - 100.0) < 0.05
