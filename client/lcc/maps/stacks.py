"""Stack-trace maps: a stack id (from ``bpf_get_stackid``) to addresses and printable frames."""

from __future__ import annotations

import errno
import sys

from .. import _libbpf
from ..errors import KeyNotFound
from .base import Map

# What frames() shows for a stack it cannot show.
GONE = "[stack gone]"


def _no_stack(err: int) -> str:
    name = errno.errorcode.get(-err)
    return f"[no stack: error {err}{f' ({name})' if name else ''}]"


def _signed_id(stack_id: int) -> int:
    """A stack id as bpf_get_stackid returned it (a long): an error code kept
    in an unsigned 32- or 64-bit member reads back negative."""
    if stack_id >= 1 << 63:
        return stack_id - (1 << 64)
    if stack_id >= 1 << 31:
        return stack_id - (1 << 32)
    return stack_id


class StackTraceMap(Map):
    """BPF_MAP_TYPE_STACK_TRACE: stack id -> instruction pointers.

    :meth:`frames` is what a tool prints: it never raises for an id.
    :meth:`stack` and :meth:`symbolize` are the strict forms (KeyNotFound
    for an id the map does not hold).
    """

    def _key(self, stack_id: int) -> bytes:
        return int(stack_id).to_bytes(4, sys.byteorder)  # u32, as the kernel stores it

    def _lookup(self, stack_id: int) -> list[int] | None:
        """The addresses of stack ``stack_id`` (0 <= id < 2**32), or None if absent."""
        raw = _libbpf.map_lookup(self.fd, self._key(stack_id), self.value_size)
        if raw is None:
            return None
        addrs = memoryview(bytes(raw)).cast("Q").tolist()
        n = next((i for i, a in enumerate(addrs) if a == 0), len(addrs))  # zero-padded
        return addrs[:n]

    def stack(self, stack_id: int) -> list[int]:
        """The addresses of a stack, innermost first; raises KeyNotFound for a stale id."""
        addrs = self._lookup(stack_id) if 0 <= stack_id < 1 << 32 else None
        if addrs is None:
            raise KeyNotFound(stack_id, self.name)
        return addrs

    def symbolize(self, stack_id: int) -> list[str]:
        """Kernel frames of a stack as ``func+0xoff`` (from /proc/kallsyms).

        Raises KeyNotFound for a stale id and SymbolsUnavailable when
        kallsyms hides kernel addresses.
        """
        from ..symbols import kernel_symbols
        return kernel_symbols().symbolize(self.stack(stack_id))

    def frames(self, stack_id: int, *, user: bool = False, markers: bool = True,
               pid: int | None = None) -> list[str]:
        """The printable frames of a stack, innermost first; never raises for an id.

        Kernel stacks read ``func+0xoff`` (``[module]`` after module
        functions), or hex addresses where kallsyms hides them.  User stacks
        (``BPF_F_USER_STACK``) read ``func+0xoff [binary]`` with the ``pid``
        of the process they were taken in (:class:`lcc.procsyms.ProcessSymbols`:
        its ``/proc/PID/maps`` and ELF symbols), or hex addresses without a
        pid (``user=True``) or once the process is gone.  An id that is an error from
        ``bpf_get_stackid`` (negative, e.g. -EFAULT, also when read back
        from an unsigned member) gives one marker frame ``[no stack: error
        -14 (EFAULT)]``; an id the map no longer holds (deleted, or
        replaced on a hash collision) gives ``[stack gone]``.  With
        ``markers=False`` both give an empty list.
        """
        sid = _signed_id(int(stack_id))
        if sid < 0:
            return [_no_stack(sid)] if markers else []
        addrs = self._lookup(sid)
        if addrs is None:
            return [GONE] if markers else []
        if pid is not None:
            from ..procsyms import ProcessSymbols
            try:
                return ProcessSymbols(pid).symbolize(addrs)
            except (ProcessLookupError, PermissionError):
                return [f"{a:#x}" for a in addrs]
        if not user:
            from ..symbols import SymbolsUnavailable, kernel_symbols
            try:
                return kernel_symbols().symbolize(addrs)
            except SymbolsUnavailable:
                pass
        return [f"{a:#x}" for a in addrs]

    def __delitem__(self, stack_id: int) -> None:
        if not _libbpf.map_delete(self.fd, self._key(stack_id)):
            raise KeyNotFound(stack_id, self.name)

    def getStacks(self, stack_id: int, sLen: int = -1) -> list[str]:  # noqa: N802,N803
        """pyLCC: the kernel frames of a stack (:meth:`frames`), the first ``sLen``
        (all when negative).  Never raises for an id: callbacks call it with
        whatever ``bpf_get_stackid`` stored, errors included."""
        frames = self.frames(stack_id)
        return frames if sLen < 0 else frames[:sLen]

    def getArr(self, stack_id: int) -> list[int] | None:  # noqa: N802
        """pyLCC: the addresses of a stack, innermost first, or None for an id
        the map does not hold (a negative one from ``bpf_get_stackid``, say)."""
        sid = _signed_id(int(stack_id))
        return self._lookup(sid) if sid >= 0 else None
