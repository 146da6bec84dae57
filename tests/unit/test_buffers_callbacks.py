"""lcc.buffers: how a callback's shape picks callback(event) or callback(ctx, event, size)."""

from __future__ import annotations

import functools

import pytest
from lcc.buffers._consumer import _positional_arity
from lcc.buffers.ring import _ring_backend
from lcc.errors import LccError


class Tool:
    def bcc(self, ctx, event, size):
        pass

    def plain(self, event):
        pass

    def __call__(self, event):
        pass


class BccPrinter:
    def __call__(self, ctx, event, size):
        pass


class StaticCall:
    @staticmethod
    def __call__(event):
        pass


def anything(*args):
    pass


@pytest.mark.parametrize("fn,arity", [
    (lambda event: None, 1),
    (lambda ctx, event, size: None, 3),
    (Tool().bcc, 3),                      # bound methods do not count self
    (Tool().plain, 1),
    (Tool(), 1),                          # objects with __call__
    (BccPrinter(), 3),
    (StaticCall(), 1),                    # a static __call__ has no self to leave out
    (anything, 99),                       # *args takes whatever is passed
    (functools.partial(lambda a, ctx, event, size: None, 1), 3),
    ([].append, 1),                       # builtins
])
def test_positional_arity(fn, arity):
    assert _positional_arity(fn) == arity


def test_ring_backend_choice(monkeypatch):
    monkeypatch.delenv("LCC_RINGBUF", raising=False)
    assert _ring_backend("libbpf") == "libbpf"
    monkeypatch.setenv("LCC_RINGBUF", "libbpf")
    assert _ring_backend(None) == "libbpf"
    with pytest.raises(LccError, match="unknown ring buffer backend"):
        _ring_backend("fast")
    monkeypatch.setattr("lcc.ringbuf_mmap.supported", lambda: False)
    assert _ring_backend("mmap") == "libbpf"  # never on a machine without TSO
