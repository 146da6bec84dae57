"""Package attributes imported on first use (PEP 562), for lcc's ``__init__`` files.

``import lcc`` and its packages stay cheap: a name is imported from its
submodule when first asked for, then kept in the package's namespace so the
next access costs nothing.  ``__import__`` rather than
``importlib.import_module``: importing importlib costs a tool's start more
than these packages themselves.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def exports(namespace: dict, modules: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for the package whose ``globals()`` is ``namespace``:
    ``modules`` maps each public name to the submodule (relative) that defines it."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(__import__(module, namespace, None, [name], 1), name)
        namespace[name] = value
        return value

    return __getattr__
