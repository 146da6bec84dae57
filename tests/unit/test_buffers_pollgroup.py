"""lcc.buffers.PollGroup over fake buffers: one epoll fd, kinds, callback errors.

A fake buffer signals through a pipe (readable while it has events) and
holds its events in a list; a test may drain its pipe by hand to play a
perf event fd whose signal was taken by an earlier poll of it.
"""

from __future__ import annotations

import os
import select

import pytest
from lcc.buffers import PollGroup
from lcc.errors import ClosedError, LccError


class FakeBuffer:
    def __init__(self, kind: str, name: str = "fake", callback=print) -> None:
        self.kind, self.name, self.callback = kind, name, callback
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.events: list = []
        self.got: list = []
        self.closed = False

    def put(self, *events, signal: bool = True) -> None:
        self.events.extend(events)
        if signal:
            os.write(self.w, b"!")

    def take_signal(self) -> None:
        try:
            os.read(self.r, 4096)
        except BlockingIOError:
            pass

    def fileno(self) -> int:
        return self.r

    def consume(self) -> int:
        self.take_signal()
        n = 0
        while self.events:
            e = self.events.pop(0)
            n += 1
            if isinstance(e, BaseException):
                raise e
            self.got.append(e)
        return n

    def close(self) -> None:
        self.closed = True
        os.close(self.r)
        os.close(self.w)


@pytest.fixture
def group():
    g = PollGroup()
    yield g
    g.close()


@pytest.fixture
def ring():
    b = FakeBuffer("ring", "rb")
    yield b
    if not b.closed:
        b.close()


@pytest.fixture
def perf():
    b = FakeBuffer("perf", "pb")
    yield b
    if not b.closed:
        b.close()


def test_one_poll_delivers_every_ready_buffer(group, ring, perf):
    group.add(ring)
    group.add(perf)
    group.add(ring)  # again: nothing changes
    assert group.poll(0) == 0
    ring.put(1, 2)
    perf.put(3)
    assert select.select([group.fileno()], [], [], 0)[0] == [group.fileno()]
    assert group.poll(1000) == 3
    assert (ring.got, perf.got) == ([1, 2], [3])
    assert group.poll(0) == 0
    assert group.has("ring") and group.has("perf") and len(group.buffers) == 2


def test_a_buffer_added_after_its_signal_is_consumed_without_waiting(group, perf):
    perf.put(7)
    perf.take_signal()  # a perf fd's signal, taken by the check that registered it
    group.add(perf)
    assert group.poll(0) == 1 and perf.got == [7]


def test_a_kind_waits_for_its_own_buffers_and_sets_the_others_aside(group, ring, perf):
    group.add(ring)
    group.add(perf)
    group.poll(0)  # the first poll consumes what the group was given
    perf.put(1)
    assert group.poll(20, kind="ring") == 0  # the perf buffer is ready, not a ring
    assert perf.got == []
    perf.take_signal()  # as the kernel does once a perf fd was polled
    ring.put(2)
    assert group.poll(1000, kind="ring") == 1 and ring.got == [2]
    assert group.poll(0, kind="perf") == 1 and perf.got == [1]  # set aside, not lost
    perf.put(3)
    assert group.poll(1000, kind="perf") == 1  # armed again
    assert group.consume("ring") == 0 and group.consume() == 0


def test_a_callback_exception_is_raised_and_the_other_ready_buffers_come_next(group, ring,
                                                                              perf):
    group.add(ring)
    group.add(perf)
    group.poll(0)
    ring.put(RuntimeError("from the callback"), 1)
    perf.put(2)
    with pytest.raises(RuntimeError, match="from the callback"):
        while True:
            group.poll(1000)
    perf.take_signal()
    ring.take_signal()
    assert group.poll(0) >= 1
    assert perf.got == [2]


def test_closed_buffers_are_skipped_and_a_closed_group_refuses(ring, perf):
    g = PollGroup()
    g.add(ring)
    g.add(perf)
    ring.close()
    perf.put(1)
    assert g.poll(1000) == 1
    assert g.buffers == [perf] and not g.has("ring")
    g.close()
    g.close()
    assert g.closed
    with pytest.raises(ClosedError):
        g.poll(0)
    with pytest.raises(ClosedError):
        g.fileno()


def test_adopt_takes_the_native_part_and_closing_it_closes_the_group(perf):
    owned = []
    g = PollGroup(adopt=owned.append)
    g.add(perf)
    assert len(owned) == 1 and not owned[0].closed
    owned[0].close()  # what the BPF object does at close
    assert g.closed
    with pytest.raises(ClosedError):
        g.consume()


def test_a_ring_buffer_without_callback_is_not_polled(group):
    b = FakeBuffer("ring", "pull", callback=None)
    with pytest.raises(LccError, match="read()"):
        group.add(b)
    b.close()
