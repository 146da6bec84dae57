"""lcc.show without a kernel: how values are written."""

from __future__ import annotations

from lcc import show


def test_format_and_plain_values():
    assert show.format_value(5) == "5"
    assert show.format_value("bash") == "bash"
    assert show.format_value("two words") == '"two words"'
    assert show.format_value((1, 2)) == "[1, 2]"
    assert show.format_value(b"\x01\xff") == "01ff"
    assert show.format_value({"a": 1, "b": "x"}) == "{a=1 b=x}"
    assert show.plain({"k": (1, b"\x00")}) == {"k": [1, "00"]}


def test_unit_from_map_name():
    assert show._unit_of("lat_us") == "usecs"
    assert show._unit_of("hist_ns") == "nsecs"
    assert show._unit_of("ms_hist") == "msecs"
    assert show._unit_of("slots") == "value"
    assert show._unit_of("buses") == "value"


def test_per_cpu_copies_are_summed():
    assert show._sum_percpu([1, 2, 3]) == 6
    assert show._sum_percpu([(1, 2), (3, 4)]) == (4, 6)
    assert show._sum_percpu(["", "bash", ""]) == "bash"  # a name: the first one set
    assert show._sum_percpu([]) == 0
