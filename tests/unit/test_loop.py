"""lcc.loop: stop signals, durations, intervals; time comes from a fake clock."""

from __future__ import annotations

import os
import signal
import threading

from lcc import loop


class FakeClock:
    """A clock advanced only by the polls (milliseconds), so no real time matters."""

    def __init__(self):
        self.now = 1000.0
        self.polls = []

    def __call__(self):
        return self.now

    def poll(self, ms):
        self.polls.append(ms)
        self.now += ms / 1000


def test_duration_ends_the_loop():
    clock = FakeClock()
    with loop.stopping(1.0, clock=clock) as stop:
        assert not stop and stop.reason is None and stop.remaining() == 1.0
        assert stop.run(clock.poll, tick=0.25) == "duration"
        assert stop and stop.reason == "duration" and stop.remaining() == 0.0
    assert clock.polls == [250, 250, 250, 250]
    assert stop.elapsed() == 1.0


def test_poll_returning_true_ends_the_loop_other_values_do_not():
    answers = iter([3, 0, 1, True])
    assert loop.run_until_stopped(lambda ms: next(answers), tick=0.001) == "done"


def test_signal_is_a_flag_and_handlers_come_back():
    seen = []

    def poll(ms):
        if not seen:
            os.kill(os.getpid(), signal.SIGTERM)  # handled as a flag: no exception here
        seen.append(ms)

    old = signal.getsignal(signal.SIGTERM)
    with loop.stopping() as stop:
        assert signal.getsignal(signal.SIGTERM) is not old
        assert stop.run(poll, tick=0.001) == "signal"
    assert len(seen) == 1  # the step that saw the signal finished, then the loop stopped
    assert stop.signal == signal.SIGTERM and stop.reason == "signal"
    assert signal.getsignal(signal.SIGTERM) is old


def test_only_the_named_signals_are_caught():
    old_hup = signal.getsignal(signal.SIGHUP)
    with loop.stopping():
        assert signal.getsignal(signal.SIGHUP) is old_hup  # SIGINT and SIGTERM by default
    with loop.stopping(signals=(signal.SIGHUP,)) as stop:
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.run(lambda ms: None, tick=0.001) == "signal"
    assert signal.getsignal(signal.SIGHUP) is old_hup


def test_intervals_count_from_the_start_and_the_last_one_is_reported():
    clock = FakeClock()
    ticks = []
    with loop.stopping(1.0, clock=clock) as stop:
        stop.run(clock.poll, interval=0.5, on_interval=lambda: ticks.append(clock.now),
                 tick=0.25)
    assert ticks == [1000.5, 1001.0]  # -d 1 -i 0.5: two reports
    assert sum(clock.polls) == 1000


def test_interval_shortens_the_wait():
    clock = FakeClock()
    ticks = []
    with loop.stopping(1.25, clock=clock) as stop:
        stop.run(clock.poll, interval=0.375, on_interval=lambda: ticks.append(clock.now),
                 tick=0.25)
    assert ticks == [1000.375, 1000.75, 1001.125]
    assert clock.polls == [250, 125, 250, 125, 250, 125, 125]


def test_sleep_is_cut_short_by_a_stop():
    with loop.stopping() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.sleep(60) is False
    clock = FakeClock()
    with loop.stopping(0, clock=clock) as stop:
        assert stop.sleep(60) is False  # the duration is over already


def test_off_the_main_thread_no_handlers_are_installed():
    result = {}

    def body():
        with loop.stopping() as stop:
            result["reason"] = stop.run(lambda ms: True)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert result == {"reason": "done"}
