"""What every map class shares: :class:`Map` (name, fd, type, sizes) and its codecs.

:class:`Map` is also the class of maps whose type has no class of its own.
"""

from __future__ import annotations

from ..btf import BtfType
from ..codecs import Codec, codec, raw_codec

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from ..object import BpfObject, MapSpec

# flags of map updates (and of queue pushes)
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

_MISSING = object()


class Map:
    """A map of any type: name, fd, type and sizes (the fallback for unknown types)."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        self._obj = obj
        self.spec = spec
        self.name = spec.name
        self._fd = obj.map_fd(spec.name)

    @property
    def fd(self) -> int:
        self._obj._check_open()
        return self._fd

    @property
    def map_type(self) -> int:
        return self.spec.type

    @property
    def type_name(self) -> str:
        return self.spec.type_name

    @property
    def key_size(self) -> int:
        return self.spec.key_size

    @property
    def value_size(self) -> int:
        return self.spec.value_size

    @property
    def max_entries(self) -> int:
        return self.spec.max_entries

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} type={self.type_name} "
                f"key={self.key_size} value={self.value_size} max={self.max_entries}>")


def _codec_for(t: BtfType | None, size: int) -> Codec:
    """The codec of a key or value: its BTF type's, or bytes when BTF has no
    type of that size."""
    if t is None or size == 0:
        return raw_codec(size)
    c = codec(t)
    return c if c.size == size else raw_codec(size)
