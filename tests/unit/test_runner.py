"""lcc.runner without a kernel: value formatting and the stop loop."""

from __future__ import annotations

import os
import signal

from lcc import runner


def test_format_and_plain_values():
    assert runner.format_value(5) == "5"
    assert runner.format_value("bash") == "bash"
    assert runner.format_value("two words") == '"two words"'
    assert runner.format_value((1, 2)) == "[1, 2]"
    assert runner.format_value(b"\x01\xff") == "01ff"
    assert runner.format_value({"a": 1, "b": "x"}) == "{a=1 b=x}"
    assert runner.plain({"k": (1, b"\x00")}) == {"k": [1, "00"]}


def test_unit_from_map_name():
    assert runner._unit_of("lat_us") == "usecs"
    assert runner._unit_of("hist_ns") == "nsecs"
    assert runner._unit_of("ms_hist") == "msecs"
    assert runner._unit_of("slots") == "value"
    assert runner._unit_of("buses") == "value"


class FakeClock:
    """time.monotonic for the runner: advanced only by the waits, so no real time matters."""

    def __init__(self):
        self.now = 1000.0
        self.waits = []

    def monotonic(self):
        return self.now

    def wait(self, t):
        self.waits.append(t)
        self.now += t


def test_until_stopped_duration_and_done(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(runner.time, "monotonic", clock.monotonic)
    assert runner.until_stopped(clock.wait, duration=1.0, tick=0.25) == "duration"
    assert clock.waits == [0.25, 0.25, 0.25, 0.25]
    n = iter(range(3))
    assert runner.until_stopped(lambda t: next(n) == 2, tick=0.001) == "done"


def test_until_stopped_on_sigterm_keeps_going_to_the_end_of_the_step():
    seen = []

    def wait(t):
        if not seen:
            os.kill(os.getpid(), signal.SIGTERM)  # handled as a flag: no exception here
        seen.append(t)

    old = signal.getsignal(signal.SIGTERM)
    assert runner.until_stopped(wait, tick=0.001) == "signal"
    assert len(seen) == 1  # the step that saw the signal finished, then the loop stopped
    assert signal.getsignal(signal.SIGTERM) is old  # handlers restored


def test_until_stopped_interval(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(runner.time, "monotonic", clock.monotonic)
    ticks = []
    runner.until_stopped(clock.wait, duration=1.2, interval=0.5,
                         on_interval=lambda: ticks.append(clock.now), tick=0.2)
    assert ticks == [1000.5, 1001.0]
    assert abs(sum(clock.waits) - 1.2) < 1e-9


def test_defines_and_assignments():
    import argparse
    p = runner.configure_parser(argparse.ArgumentParser())
    a = p.parse_args(["x.bpf.c", "-D", "A=1", "-D", "B", "--set", "pid=0x10", "-s", "c=bash",
                      "-d", "2", "--json"])
    assert dict(a.defines) == {"A": "1", "B": None}
    assert dict(a.rodata) == {"pid": 16, "c": "bash"}
    assert a.duration == 2 and a.json
