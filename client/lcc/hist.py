"""Histograms as data, and their text rendering.

Two kinds, both plain Python values that a BPF map's contents are turned into:

- :class:`Log2Hist`: a count per power-of-two slot, with the slot convention
  of ``lbc_hist_slot()`` in ``lbc.h``: slot 0 holds the values 0 and 1, slot
  *k* (k >= 1) holds ``[2**k, 2**(k+1))``.  There are :data:`LOG2_SLOTS` (64)
  slots, the last one holding ``[2**63, 2**64)``.
- :class:`LinearHist`: a count per fixed-width bucket, bucket *i* holding
  ``[base + i*step, base + (i+1)*step)``.

``render()`` draws them as BCC's ``print_log2_hist`` / ``print_linear_hist``
do (same header, columns and 40-character star bar), so output of an lcc tool
reads like its BCC or libbpf-tools original.  :func:`render_summary` draws a
compact ``MIN -> MAX : PCT% TOTAL`` table with an average, and
:func:`render_pylcc` pyLCC's ``showHist`` rows (``[1K,2K)     37  |@@@@  |``)
for the log2 and log10 slots of lbc.h's ``hist2_push``/``hist10_push``.
Renderers return strings (no trailing newline); nothing here prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "LINEAR_MAX_BUCKETS",
    "LOG2_SLOTS",
    "Bucket",
    "Log2Hist",
    "LinearHist",
    "log2_slot",
    "render_pylcc",
    "render_sections",
    "render_summary",
]

#: Number of log2 slots; matches ``LBC_HIST_SLOTS`` in lbc.h.
LOG2_SLOTS = 64

#: Most buckets a linear histogram may span (a guard against keys that are not buckets).
LINEAR_MAX_BUCKETS = 1 << 16

#: Width of the star bar, as in BCC.
STARS_MAX = 40

K = TypeVar("K", bound=Hashable)


class Bucket(NamedTuple):
    """One histogram bucket: values ``low`` to ``high`` inclusive, seen ``count`` times.

    (A NamedTuple, not a dataclass: ``dataclasses`` would add ~10 ms to every
    tool's start that imports this module.)
    """

    low: int
    high: int
    count: int

    def to_dict(self) -> dict[str, int]:
        """Return ``{"low": .., "high": .., "count": ..}``."""
        return {"low": self.low, "high": self.high, "count": self.count}


def log2_slot(value: int) -> int:
    """Return the slot ``lbc_hist_slot(value)`` puts *value* in.

    0 and 1 go to slot 0; otherwise the slot is ``floor(log2(value))``,
    capped at ``LOG2_SLOTS - 1``.  Raises ValueError for a negative value.
    """
    value = int(value)
    if value < 0:
        raise ValueError(f"log2 histogram values are unsigned, got {value}")
    return min(max(value.bit_length() - 1, 0), LOG2_SLOTS - 1)


def _counts_from(
    counts: Sequence[int] | Mapping[int, int], limit: int | None, kind: str
) -> list[int]:
    """Normalise a sequence or slot->count mapping to a list without trailing zeros.

    Raises ValueError for a negative count, a negative index, or a non-zero
    count at an index >= *limit* (when a limit is given).
    """
    if isinstance(counts, Mapping):
        items = [(int(k), int(v)) for k, v in counts.items()]
    else:
        items = [(i, int(v)) for i, v in enumerate(counts)]
    size = 0
    for index, count in items:
        if count < 0:
            raise ValueError(f"{kind} count at index {index} is negative ({count})")
        if index < 0:
            raise ValueError(f"{kind} index {index} is negative")
        if count and limit is not None and index >= limit:
            raise ValueError(f"{kind} index {index} is out of range (0..{limit - 1})")
        if count:
            size = max(size, index + 1)
    out = [0] * size
    for index, count in items:
        if index < size:
            out[index] += count
    return out


def _stars(count: int, count_max: int, width: int) -> str:
    """The star bar BCC draws: floor(width * count / count_max) stars, at most width."""
    if count_max <= 0:
        return ""
    # BCC compares against a float quotient; do the same so bars match it.
    return "*" * min(width, math.floor(width * count / count_max))


def _group(entries: Iterable[tuple[K, int, int]]) -> dict[K, dict[int, int]]:
    """Fold ``(key, index, count)`` triples into ``{key: {index: count}}`` (counts add up)."""
    grouped: dict[K, dict[int, int]] = {}
    for key, index, count in entries:
        slots = grouped.setdefault(key, {})
        slots[int(index)] = slots.get(int(index), 0) + int(count)
    return grouped


class _Hist:
    """What both kinds hold: a count per bucket from 0 to the last non-empty one."""

    __slots__ = ("_counts",)
    _counts: tuple[int, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        """Count per slot (bucket), from 0 up to the last non-empty one."""
        return self._counts

    @property
    def total(self) -> int:
        """Number of values recorded (sum of all counts)."""
        return sum(self._counts)

    @property
    def buckets(self) -> list[Bucket]:
        """Every bucket from 0 to the last non-empty one (empty if no data)."""
        raise NotImplementedError

    def __bool__(self) -> bool:
        return bool(self._counts)

    def _summed(self, other: _Hist) -> list[int]:
        """Per-bucket sums of this histogram's counts and ``other``'s."""
        size = max(len(self._counts), len(other._counts))
        a = self._counts + (0,) * (size - len(self._counts))
        b = other._counts + (0,) * (size - len(other._counts))
        return [x + y for x, y in zip(a, b)]

    def _render(self, header: str, stars: int, row: Callable[[Bucket, str], str],
                strip_leading_zero: bool) -> str:
        """``header``, then ``row(bucket, bar)`` per bucket (bars ``stars`` wide at
        most); "" when empty.  ``strip_leading_zero`` leaves out the empty
        buckets before the first non-empty one."""
        if not self._counts:
            return ""
        count_max = max(self._counts)
        lines = [header]
        skipping = strip_leading_zero
        for bucket in self.buckets:
            if skipping and not bucket.count:
                continue
            skipping = False
            lines.append(row(bucket, _stars(bucket.count, count_max, stars)))
        return "\n".join(lines)


class Log2Hist(_Hist):
    """A log2 histogram with lbc.h's slot convention; immutable.

    ``counts[k]`` is the number of values in slot *k* (see :func:`log2_slot`).
    Compare with ``==``; combine with ``+`` (e.g. to add per-CPU copies).
    """

    __slots__ = ()

    def __init__(self, counts: Sequence[int] | Mapping[int, int] = ()) -> None:
        """Build from per-slot counts; same contract as :meth:`from_slots`."""
        self._counts: tuple[int, ...] = tuple(_counts_from(counts, LOG2_SLOTS, "log2 slot"))

    @classmethod
    def from_slots(cls, counts: Sequence[int] | Mapping[int, int]) -> Log2Hist:
        """Build from what a slot -> count map holds.

        *counts* is either a sequence indexed by slot (an array map's values)
        or a mapping ``{slot: count}`` (a hash map's items); missing slots
        count 0.  Raises ValueError for negative counts or slots >= LOG2_SLOTS.
        """
        return cls(counts)

    @classmethod
    def from_values(cls, values: Iterable[int]) -> Log2Hist:
        """Build by putting each raw value in its slot, as ``lbc_hist_add()`` does."""
        counts = [0] * LOG2_SLOTS
        for value in values:
            counts[log2_slot(value)] += 1
        return cls(counts)

    @classmethod
    def grouped(cls, entries: Iterable[tuple[K, int, int]]) -> dict[K, Log2Hist]:
        """Split ``(key, slot, count)`` triples into one histogram per key.

        This is how a map keyed by ``struct {key; slot}`` (a histogram per
        pid, per syscall, ...) becomes data.  Keys keep first-seen order.
        """
        return {key: cls.from_slots(slots) for key, slots in _group(entries).items()}

    @staticmethod
    def slot_range(slot: int) -> tuple[int, int]:
        """Return the inclusive ``(low, high)`` values of *slot*.

        Slot 0 is ``(0, 1)``; slot k is ``(2**k, 2**(k+1) - 1)``.
        Raises ValueError outside ``0 .. LOG2_SLOTS-1``.
        """
        if not 0 <= slot < LOG2_SLOTS:
            raise ValueError(f"log2 slot {slot} is out of range (0..{LOG2_SLOTS - 1})")
        if slot == 0:
            return 0, 1
        return 1 << slot, (1 << (slot + 1)) - 1

    @property
    def buckets(self) -> list[Bucket]:
        """Every slot from 0 to the last non-empty one, as :class:`Bucket` (empty if no data)."""
        return [Bucket(*self.slot_range(i), c) for i, c in enumerate(self._counts)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Log2Hist):
            return NotImplemented
        return self._counts == other._counts

    def __hash__(self) -> int:
        return hash(("log2", self._counts))

    def __add__(self, other: Log2Hist) -> Log2Hist:
        if not isinstance(other, Log2Hist):
            return NotImplemented
        return Log2Hist(self._summed(other))

    def __repr__(self) -> str:
        return f"Log2Hist({dict((i, c) for i, c in enumerate(self._counts) if c)!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: ``{"type": "log2", "total", "buckets": [{low, high, count}]}``.

        ``buckets`` lists the slots from 0 to the last non-empty one, as rendered.
        """
        return {
            "type": "log2",
            "total": self.total,
            "buckets": [b.to_dict() for b in self.buckets],
        }

    def render(self, val_type: str = "value", *, strip_leading_zero: bool = False) -> str:
        """Draw the histogram as BCC's ``print_log2_hist`` does; return the text.

        Header ``     {val_type:<19} : count     distribution``, then one row
        ``{low:>10} -> {high:<10} : {count:<8} |{stars:<40}|`` per slot from
        slot 0 to the last non-empty one.  When a value >= 2**32 was seen the
        columns widen to 20 and the bar halves to 20, as in BCC.  With
        *strip_leading_zero*, empty slots before the first non-empty one are
        left out.  Returns "" for an empty histogram.
        """
        # BCC's slot index is ours + 1 (its slot 0 holds only the value 0),
        # and it switches to wide columns when that index exceeds 32.
        wide = len(self._counts) > 32
        if wide:
            header = f"               {val_type:<29} : count     distribution"
            width, stars = 20, STARS_MAX // 2
        else:
            header = f"     {val_type:<19} : count     distribution"
            width, stars = 10, STARS_MAX
        return self._render(
            header, stars,
            lambda b, bar: (f"{b.low:>{width}} -> {b.high:<{width}} : "
                            f"{b.count:<8} |{bar:<{stars}}|"),
            strip_leading_zero)


class LinearHist(_Hist):
    """A linear histogram: bucket i holds ``[base + i*step, base + (i+1)*step)``; immutable.

    The BPF side stores ``(value - base) / step`` as the key.
    """

    __slots__ = ("base", "step")

    def __init__(
        self, counts: Sequence[int] | Mapping[int, int] = (), *, base: int = 0, step: int = 1
    ) -> None:
        """Build from per-bucket counts; same contract as :meth:`from_slots`."""
        if step < 1:
            raise ValueError(f"linear histogram step must be >= 1, got {step}")
        self.base = int(base)
        self.step = int(step)
        self._counts: tuple[int, ...] = tuple(
            _counts_from(counts, LINEAR_MAX_BUCKETS, "linear bucket")
        )

    @classmethod
    def from_slots(
        cls, counts: Sequence[int] | Mapping[int, int], *, base: int = 0, step: int = 1
    ) -> LinearHist:
        """Build from a bucket-index -> count sequence or mapping (missing buckets count 0).

        Raises ValueError for negative indexes or counts, a non-empty bucket
        index >= LINEAR_MAX_BUCKETS, or a step < 1.
        """
        return cls(counts, base=base, step=step)

    @classmethod
    def from_values(cls, values: Iterable[int], *, base: int = 0, step: int = 1) -> LinearHist:
        """Build by bucketing raw values.

        Raises ValueError for a value below *base* or a step < 1.
        """
        if step < 1:
            raise ValueError(f"linear histogram step must be >= 1, got {step}")
        counts: dict[int, int] = {}
        for raw in values:
            value = int(raw)
            if value < base:
                raise ValueError(f"value {value} is below the histogram base {base}")
            index = (value - base) // step
            counts[index] = counts.get(index, 0) + 1
        return cls.from_slots(counts, base=base, step=step)

    @classmethod
    def grouped(
        cls, entries: Iterable[tuple[K, int, int]], *, base: int = 0, step: int = 1
    ) -> dict[K, LinearHist]:
        """Split ``(key, bucket, count)`` triples into one histogram per key (first-seen order)."""
        return {
            key: cls.from_slots(slots, base=base, step=step)
            for key, slots in _group(entries).items()
        }

    @property
    def buckets(self) -> list[Bucket]:
        """Every bucket from 0 to the last non-empty one, as :class:`Bucket`."""
        return [
            Bucket(self.base + i * self.step, self.base + (i + 1) * self.step - 1, c)
            for i, c in enumerate(self._counts)
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearHist):
            return NotImplemented
        return (self._counts, self.base, self.step) == (other._counts, other.base, other.step)

    def __hash__(self) -> int:
        return hash(("linear", self._counts, self.base, self.step))

    def __add__(self, other: LinearHist) -> LinearHist:
        if not isinstance(other, LinearHist):
            return NotImplemented
        if (self.base, self.step) != (other.base, other.step):
            raise ValueError("cannot add linear histograms with different base or step")
        return LinearHist(self._summed(other), base=self.base, step=self.step)

    def __repr__(self) -> str:
        counts = {i: c for i, c in enumerate(self._counts) if c}
        return f"LinearHist({counts!r}, base={self.base}, step={self.step})"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"type": "linear", "base", "step", "total", "buckets": [{low, high, count}]}``."""
        return {
            "type": "linear",
            "base": self.base,
            "step": self.step,
            "total": self.total,
            "buckets": [b.to_dict() for b in self.buckets],
        }

    def render(self, val_type: str = "value", *, strip_leading_zero: bool = False) -> str:
        """Draw the histogram as BCC's ``print_linear_hist`` does; return the text.

        Header ``     {val_type:<13} : count     distribution``, then one row
        ``        {low:<10} : {count:<8} |{stars:<40}|`` per bucket from 0 to
        the last non-empty one, labelled with the bucket's lowest value.
        Returns "" for an empty histogram.
        """
        return self._render(
            f"     {val_type:<13} : count     distribution", STARS_MAX,
            lambda b, bar: f"        {b.low:<10} : {b.count:<8} |{bar:<{STARS_MAX}}|",
            strip_leading_zero)


def render_sections(
    hists: Mapping[K, Log2Hist | LinearHist],
    val_type: str = "value",
    *,
    section_header: str = "Bucket ptr",
    section_fmt: Callable[[K], str] = repr,
    strip_leading_zero: bool = False,
) -> str:
    """Render one histogram per key, each after a ``\\n{section_header} = {key}`` line.

    This is BCC's output for a histogram map with a secondary key.  Keys are
    shown with *section_fmt* (``repr`` by default, as BCC does); sections keep
    the mapping's order.  Returns "" when *hists* is empty.
    """
    parts = []
    for key, hist in hists.items():
        parts.append(f"\n{section_header} = {section_fmt(key)}")
        body = hist.render(val_type, strip_leading_zero=strip_leading_zero)
        if body:
            parts.append(body)
    return "\n".join(parts)


def render_summary(
    hist: Log2Hist | LinearHist, total_sum: int | float | None = None, unit: str = "usecs"
) -> str:
    """Render the compact per-bucket summary and the average; return the text.

    One line ``{low:>10} -> {high:<10} : {pct:6.2f}% {count}`` per non-empty
    bucket, under a ``       MIN -> MAX        :    PCT% TOTAL`` header.  When
    *total_sum* (the sum of every recorded value, which a histogram alone
    cannot know) is given, a last line ``average: {sum/total:.2f} {unit}``
    follows.  Returns "" for an empty histogram.
    """
    total = hist.total
    if not total:
        return ""
    lines = [f"{'MIN':>10} -> {'MAX':<10} : {'PCT%':>7} TOTAL"]
    for bucket in hist.buckets:
        if bucket.count:
            pct = 100.0 * bucket.count / total
            lines.append(f"{bucket.low:>10} -> {bucket.high:<10} : {pct:6.2f}% {bucket.count}")
    if total_sum is not None:
        lines.append(f"average: {total_sum / total:.2f} {unit}")
    return "\n".join(lines)


# Unit prefixes of pyLCC's histogram labels and counts.
_PYLCC_UNITS = "KMGTPE"


def _pylcc_pow2(k: int) -> str:
    """2**k as pyLCC labels it: 512, 1K, 2K ... 1M (a prefix every 10 bits)."""
    prefix, k = divmod(k, 10)
    return f"{1 << k}{_PYLCC_UNITS[prefix - 1] if prefix else ''}"


def _pylcc_decimal(v: int) -> str:
    """A value with a prefix every 3 decimal digits, truncated: 999, 1K, 12K, 1M."""
    prefix = 0
    while v >= 1000 and prefix < len(_PYLCC_UNITS):
        v //= 1000
        prefix += 1
    return f"{v}{_PYLCC_UNITS[prefix - 1] if prefix else ''}"


def render_pylcc(counts: Sequence[int], *, base: int = 2, columns: int | None = None) -> str:
    """Draw per-slot counts as pyLCC's ``showHist`` does; return the text.

    One row ``{range:<12}{count:<4}|{bar}|`` per slot from the first to the
    last non-empty one, the bar's ``@`` marks proportional to the slot's
    share of the total, the row as wide as ``columns`` (default: the
    terminal's, 80 when there is none).  ``base`` 2: slot 0 holds 0 and 1,
    slot k ``[2**k, 2**(k+1))`` (``hist2_push``); 10: slot 0 holds
    ``[0, 10)``, slot k ``[10**k, 10**(k+1))`` (``hist10_push``).  Ranges and
    counts carry unit prefixes (``1K``).  Raises ValueError, with pyLCC's
    message, when every count is zero.
    """
    if base not in (2, 10):
        raise ValueError(f"pyLCC histograms are log2 or log10, not log{base}")
    values = [int(c) for c in counts]
    filled = [i for i, c in enumerate(values) if c]
    if not filled:
        raise ValueError("The input list is empty or all zero.")
    if columns is None:
        import shutil
        columns = shutil.get_terminal_size((80, 24)).columns
    bars = max(columns, 30) - 18
    total = sum(values)
    lines = []
    for i in range(filled[0], filled[-1] + 1):
        if base == 2:
            low = "0" if i == 0 else _pylcc_pow2(i)
            label = f"[{low},{_pylcc_pow2(i + 1)})"
        else:
            low = "0" if i == 0 else _pylcc_decimal(10 ** i)
            label = f"[{low},{_pylcc_decimal(10 ** (i + 1))})"
        marks = values[i] * bars // total
        bar = "@" * marks + " " * (bars - marks)
        lines.append(f"{label:<12}{_pylcc_decimal(values[i]):<4}|{bar}|")
    return "\n".join(lines)
