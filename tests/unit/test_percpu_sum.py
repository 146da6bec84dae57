"""Adding up per-CPU values (PerCpuMixin.sum/sums) without a kernel."""

from collections import namedtuple

from lcc.maps.keyvalue import _sum_values

Stats = namedtuple("Stats", "bytes packets name")


def test_numbers_and_arrays_are_added():
    assert _sum_values([1, 2, 3]) == 6
    assert _sum_values([(1, 2), (3, 4)]) == (4, 6)


def test_struct_fields_added_and_names_kept():
    # A device's name is written by whichever CPU saw it first; the others hold "".
    per_cpu = [Stats(10, 1, ""), Stats(32, 2, "veth0"), Stats(0, 0, "")]
    assert _sum_values(per_cpu) == {"bytes": 42, "packets": 3, "name": "veth0"}


def test_empty_is_zero():
    assert _sum_values([]) == 0
