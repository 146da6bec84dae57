"""Histograms of slot -> count maps without a kernel: BCC's print_*_hist names."""

from __future__ import annotations

import pytest
from lcc.hist import LinearHist, Log2Hist
from lcc.maps import HashMap, PerCpuHashMap


def fake(cls, items: dict):
    """A key-value map of ``cls`` whose elements are ``items`` (no fd, no kernel)."""
    class Fake(cls):
        def __init__(self) -> None:
            self.name = "dist"

        def items(self):
            return list(items.items())
    return Fake()


def test_print_log2_hist_draws_the_slots(capsys):
    m = fake(HashMap, {2: 3, 5: 1, 0: 0})

    m.print_log2_hist("usecs")

    assert capsys.readouterr().out == Log2Hist.from_slots({2: 3, 5: 1}).render("usecs") + "\n"
    assert m.log2_hist() == Log2Hist.from_slots({2: 3, 5: 1})


def test_print_linear_hist_labels_rows_by_step(capsys):
    m = fake(HashMap, {0: 2, 3: 4})

    m.print_linear_hist("ms", step=10)

    out = capsys.readouterr().out
    assert out == LinearHist.from_slots({0: 2, 3: 4}, step=10).render("ms") + "\n"
    assert out.splitlines()[0].startswith("     ms            : count")
    assert "        30         : 4        |" in out


def test_per_cpu_counts_are_added_up(capsys):
    m = fake(PerCpuHashMap, {1: [1, 2, 0], 3: [0, 0, 0]})

    m.print_linear_hist()

    assert m.linear_hist() == LinearHist.from_slots({1: 3})
    assert "        1          : 3        |" in capsys.readouterr().out


def test_empty_map_prints_nothing(capsys):
    fake(HashMap, {}).print_log2_hist()
    fake(HashMap, {4: 0}).print_linear_hist()
    assert capsys.readouterr().out == ""


def test_struct_keys_are_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"map 'dist' is not a slot -> count map.*grouped"):
        fake(HashMap, {(1, 2): 3}).print_log2_hist()
