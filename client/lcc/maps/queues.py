"""Queue and stack maps: values pushed and popped, no keys."""

from __future__ import annotations

from .. import _libbpf
from ..errors import KeyNotFound
from .base import BPF_ANY, Map, _codec_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from ..object import BpfObject, MapSpec


class QueueMap(Map):
    """BPF_MAP_TYPE_QUEUE (FIFO) and, as :class:`StackMap`, BPF_MAP_TYPE_STACK (LIFO)."""

    def __init__(self, obj: "BpfObject", spec: "MapSpec") -> None:
        super().__init__(obj, spec)
        self.value_codec = _codec_for(spec.value_type, spec.value_size)

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        """Add a value; with BPF_EXIST a full map drops its oldest element."""
        _libbpf.map_update(self.fd, None, self.value_codec.encode(value), flags)

    def pop(self) -> Any:
        """Remove and return the next value; raises KeyNotFound when empty."""
        raw = _libbpf.map_lookup_and_delete(self.fd, None, self.value_size)
        if raw is None:
            raise KeyNotFound(None, self.name, message=f"map '{self.name}' is empty")
        return self.value_codec.decode(raw, 0)

    def peek(self) -> Any:
        """The next value without removing it; raises KeyNotFound when empty."""
        raw = _libbpf.map_lookup(self.fd, None, self.value_size)  # type: ignore[arg-type]
        if raw is None:
            raise KeyNotFound(None, self.name, message=f"map '{self.name}' is empty")
        return self.value_codec.decode(raw, 0)

    def drain(self) -> list[Any]:
        """Pop until empty."""
        out = []
        while True:
            raw = _libbpf.map_lookup_and_delete(self.fd, None, self.value_size)
            if raw is None:
                return out
            out.append(self.value_codec.decode(raw, 0))


class StackMap(QueueMap):
    """BPF_MAP_TYPE_STACK: pop returns the newest value."""
