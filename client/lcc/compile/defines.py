"""Macro definitions (``-DNAME[=VALUE]``): the one parser and checker of them.

Every way a define reaches the compiler goes through here: ``lcc compile
-D``, ``lcc run -D``, ClbcBase's pyLCC-style ``env="-DA=1 -DB"``, and the
``defines`` mapping :func:`lcc.compile.build` takes.  A define is a
``(name, value)`` pair: ``name`` a C identifier, ``value`` one line of text or
None for a bare ``-DNAME``.  The compile service checks the same rules.
"""

from __future__ import annotations

from ..errors import LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["is_name", "normalize", "parse_args", "parse_define", "parse_env"]

def is_name(name: object) -> bool:
    """Whether ``name`` is a C identifier (a macro name) of at most 64 characters.

    The compile service's rule (``lcc_toolchain.validation.DEFINE_NAME_RE``,
    which a unit test holds this to), without a regular expression: ``re``
    and the validation module would cost a tool's start some 5-20 ms.  An
    ASCII Python identifier is exactly a C one.
    """
    return (isinstance(name, str) and 0 < len(name) <= 64 and name.isascii()
            and name.isidentifier())


def _checked(name: Any, value: Any) -> tuple[str, str | None]:
    if not is_name(name):
        raise LccError(f"define name {name!r} is not a C identifier")
    if value is not None:
        value = str(value)
        if any(c in value for c in "\n\r\0"):
            raise LccError(f"define {name} must be one line")
    return name, value


def parse_define(text: str) -> tuple[str, str | None]:
    """``"NAME"`` -> ``(NAME, None)``; ``"NAME=VALUE"`` -> ``(NAME, VALUE)`` (VALUE may
    be empty).  Raises :class:`LccError` for a missing or bad name or a value of
    more than one line."""
    name, eq, value = text.partition("=")
    if not name:
        raise LccError(f"-D {text!r} has no macro name")
    return _checked(name, value if eq else None)


def parse_args(items: Iterable[str]) -> dict[str, str | None]:
    """``NAME[=VALUE]`` items (repeated ``-D`` options) as a mapping; a later
    definition of a name wins.  Raises as :func:`parse_define`."""
    return dict(parse_define(item) for item in items)


def parse_env(env: str | None) -> dict[str, str | None]:
    """pyLCC's ``env`` string (``'-DPID=5 -DDEBUG -DNAME="a b"'``, shell quoting) as a
    mapping.  Raises :class:`LccError` for anything but ``-DNAME[=VALUE]`` words."""
    import shlex  # only for pyLCC's env strings
    out: dict[str, str | None] = {}
    for word in shlex.split(env or ""):
        if not word.startswith("-D") or len(word) < 3:
            raise LccError(f"env accepts only -DNAME[=VALUE] definitions, not {word!r}")
        name, value = parse_define(word[2:])
        out[name] = value
    return out


def normalize(defines: Mapping[Any, Any] | None) -> dict[str, str | None]:
    """``defines`` (NAME -> value, None for a bare define, numbers allowed) with every
    value a string or None.  Raises :class:`LccError` for a name that is not a C
    identifier or a value of more than one line."""
    return dict(_checked(name, value) for name, value in (defines or {}).items())
