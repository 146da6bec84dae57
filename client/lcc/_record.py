"""Read-only record classes: lcc's inert descriptions (BTF types, map specs, diagnostics).

``@dataclass(frozen=True)`` would write each of these in a few lines, but
importing :mod:`dataclasses` pulls in ``inspect``, ``ast`` and ``re`` (about
20 ms of a tool's start) and generating each class costs a further ~0.3 ms;
lcc needs a couple of dozen before a tool's first event.  A :class:`Record`
gives the parts of a frozen dataclass that lcc uses:

* fields named in ``__slots__``, base class fields first (names starting
  with ``_`` are private state, e.g. a cache, not fields);
* an ``__init__`` written out per class (signatures and defaults stay
  readable) that stores the fields with :meth:`Record._set`;
* read-only attributes (assignment raises ``AttributeError``);
* ``repr`` as a dataclass prints it (fields in ``_repr_skip`` left out),
  pickling and copying;
* identity equality, or value equality and hashing with ``_by_value = True``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Base of read-only records; see the module's docstring."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()  # set for each subclass by __init_subclass__
    _repr_skip: frozenset[str] = frozenset()
    _by_value = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(name for klass in reversed(cls.__mro__)
                            for name in klass.__dict__.get("__slots__", ())
                            if not name.startswith("_"))
        if cls._by_value:
            cls.__eq__ = Record._value_eq  # type: ignore[method-assign]
            cls.__hash__ = Record._value_hash  # type: ignore[method-assign]

    def _set(self, **values: Any) -> None:
        """Store fields (and private slots) once, from ``__init__``."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}' of a read-only "
                             f"{type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}' of a read-only "
                             f"{type(self).__name__}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields
                          if f not in self._repr_skip)
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Every subclass's __init__ takes its fields in _fields order.
        return type(self), self._values()

    def _value_eq(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def _value_hash(self) -> int:
        return hash(self._values())
