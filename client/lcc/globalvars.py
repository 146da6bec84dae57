"""Global variables of a BPF object, by name: ``.rodata``, ``.bss``, ``.data``.

A :class:`GlobalSection` reads and writes one data section's variables
through the object that owns it: an :class:`lcc.spec.ObjectSpec` before load
(the values are recorded in the spec, so that every load of it starts from
them) or a live :class:`lcc.object.BpfObject` after (the kernel's map memory).
The owner provides ``btf``, ``_global_memory(section)`` and
``_write_global(section, offset, data)``.
"""

from __future__ import annotations

import sys

from .btf import KIND_DATASEC, Datasec
from .codecs import Codec, codec
from .errors import LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterator

    from .btf import Btf, BtfType


class GlobalSection:
    """The global variables of one data section (``.rodata``, ``.bss``, ``.data``).

    Attribute access reads and writes variables by name.  Before load the
    values are recorded in the object's spec and live in libbpf's image of
    the section that load hands to the kernel; after load ``.bss`` and
    ``.data`` are read and written in the kernel's map memory (mmap), and
    ``.rodata`` is read-only.  A section libbpf made without
    ``BPF_F_MMAPABLE`` (one that holds only ``static`` variables) is read
    and written through its map instead (a lookup, or a lookup and an
    update, of its one element per access).  Assigning a value the variable cannot hold
    raises the TypeError, ValueError or OverflowError of the codec, naming
    the variable and its type.
    """

    def __init__(self, owner: Any, type_id: int, section: str) -> None:
        # Straight into __dict__: attribute assignment sets variables
        self.__dict__.update(
            _owner=owner, _section=section,
            _type_id=type_id,  # the section's BTF DATASEC
            # Read on first use, not at open: most tools touch few of their globals.
            _layout=None,  # name -> (offset, size, BTF type id)
            _codecs={},  # name -> (offset, Codec)
            _ints={})  # name -> (offset, size, signed), None for other types

    @property
    def _vars(self) -> dict[str, tuple[int, int, int]]:
        if self._layout is None:
            object.__setattr__(self, "_layout", self._owner.btf.datasec_vars(self._type_id))
        return self._layout

    def _var(self, name: str) -> tuple[int, Codec]:
        """(offset, codec) of variable ``name``; raises KeyError if there is none."""
        got = self._codecs.get(name)
        if got is None:
            offset, _size, type_id = self._vars[name]
            got = self._codecs[name] = (offset, codec(self._owner.btf.type(type_id)))
        return got

    def _int_var(self, name: str) -> tuple[int, int, bool] | None:
        """(offset, size, signed) of an integer, bool or enum variable, None for
        other types; raises KeyError if there is no variable ``name``."""
        got = self._ints.get(name, self)  # self: not looked at yet (None is an answer)
        if got is not self:
            return got
        offset, size, type_id = self._vars[name]
        layout = self._owner.btf.int_layout(type_id)
        got = None if layout is None or layout[0] != size else (offset, size, layout[1])
        self._ints[name] = got
        return got

    def names(self) -> list[str]:
        return list(self._vars)

    def _missing(self, name: str) -> AttributeError:
        return AttributeError(f"{self._section} has no variable '{name}' "
                              f"(it has: {', '.join(self._vars) or 'none'})")

    def _encode(self, name: str, value: Any) -> tuple[int, bytes]:
        """(offset, bytes) of ``value`` for variable ``name``, checked by its type.

        Before load, integers take a short path (no codec is built: the
        common case of a knob); the codec decides everything else, and says
        why a value does not fit.
        """
        if isinstance(value, int) and not self._owner.loaded:
            iv = self._int_var(name)
            if iv is not None:
                off, size, signed = iv
                try:
                    return off, value.to_bytes(size, sys.byteorder, signed=signed and value < 0)
                except OverflowError:
                    pass  # the codec says why, in its words
        off, c = self._var(name)
        try:
            return off, c.encode(value)
        except (OverflowError, ValueError, TypeError) as e:
            # the built-in class (a UnicodeError, say, takes other arguments)
            cls = next(k for k in (OverflowError, ValueError, TypeError) if isinstance(e, k))
            raise cls(f"{self._section} variable '{name}' ({c.type}, {c.size} bytes) "
                      f"cannot hold {value!r}: {e}") from None

    def __getattr__(self, name: str) -> Any:
        try:
            off, c = self._var(name)
        except KeyError:
            raise self._missing(name) from None
        return c.decode(self._owner._global_memory(self._section), off)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            off, data = self._encode(name, value)
        except KeyError:
            raise self._missing(name) from None
        self._owner._write_global(self._section, off, data)

    __getitem__ = __getattr__
    __setitem__ = __setattr__

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._vars}

    def __repr__(self) -> str:
        return f"<GlobalSection {self._section} {self.names()}>"


class GlobalsMixin:
    """What a spec and a live object share about their data sections.

    Needs ``btf`` and ``_globals`` (section name -> GlobalSection).
    """

    btf: Btf
    _globals: dict[str, GlobalSection]

    def section(self, name: str) -> GlobalSection:
        """Globals of a data section by its ELF name (``.rodata``, ``.bss``, ``.data``, ...)."""
        try:
            return self._globals[name]
        except KeyError:
            raise LccError(f"the object has no {name} variables "
                           f"(sections with globals: {', '.join(self._globals) or 'none'})") \
                from None

    def global_sections(self) -> dict[str, GlobalSection]:
        return dict(self._globals)

    def iter_globals(self) -> Iterator[tuple[str, str, BtfType]]:
        """(section, name, type) of every global variable."""
        for secname in self._globals:
            sec = self.btf.find(secname, KIND_DATASEC)
            if isinstance(sec, Datasec):
                for vs in sec.vars:
                    yield secname, vs.var.name, vs.var.type
