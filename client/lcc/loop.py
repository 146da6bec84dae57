"""Run a tool until it is told to stop: Ctrl-C, SIGTERM, a duration, or its own condition.

A tool's main loop, as the example tools and ``lcc run`` write it::

    import lcc.loop

    with lcc.loop.stopping(duration=args.duration) as stop:
        stop.run(tool.ring_buffer_poll)      # poll(timeout_ms) until stopped
        tool.ring_buffer_consume()           # what arrived while stopping
    print_summary(stop.elapsed())

or by hand, when the loop does more than poll::

    with lcc.loop.stopping() as stop:
        while not stop:
            tool.ring_buffer_poll(100)

While :func:`stopping` is active, the stop signals (SIGINT and SIGTERM by
default) only set a flag: nothing is raised from the handler, so an event
being handled is never cut in half or lost, and a blocking poll returns
early (EINTR) or at its timeout and the loop sees the flag.  The previous
handlers come back when the block ends.  Only the main thread may install
handlers; elsewhere the block runs with the handlers it had.
"""

from __future__ import annotations

import signal
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["DEFAULT_SIGNALS", "Stop", "run_until_stopped", "stopping"]

#: The signals that stop a loop unless the caller names others.
DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """The stop flag and clock of one loop; true once it is time to stop.

    Made by :func:`stopping`.  ``signal`` is the number of the stop signal
    that arrived (None until then); ``duration`` (seconds, None: no limit)
    counts from the start of the ``with`` block.  ``clock`` (default
    ``time.monotonic``) tells the time, in seconds.
    """

    def __init__(self, duration: float | None = None,
                 signals: Iterable[int] = DEFAULT_SIGNALS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.duration = duration
        self.signals = tuple(signals)
        self.signal: int | None = None
        self._clock = clock
        self.started = clock()
        self._old: dict[int, Any] = {}

    # -- the with block ------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __enter__(self) -> "Stop":
        self.started = self._clock()
        try:
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: handlers cannot be installed
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    # -- the state -----------------------------------------------------------------------

    @property
    def reason(self) -> str | None:
        """``"signal"``, ``"duration"`` (its time is over), or None while running on."""
        if self.signal is not None:
            return "signal"
        if self.duration is not None and self.elapsed() >= self.duration:
            return "duration"
        return None

    def __bool__(self) -> bool:
        return self.reason is not None

    def elapsed(self) -> float:
        """Seconds since the block started."""
        return self._clock() - self.started

    def remaining(self) -> float | None:
        """Seconds left of the duration (None: no duration)."""
        if self.duration is None:
            return None
        return max(0.0, self.duration - self.elapsed())

    # -- waiting -------------------------------------------------------------------------

    def sleep(self, seconds: float, tick: float = 0.1) -> bool:
        """Sleep ``seconds``, cut short by a stop; True if the whole time passed."""
        end = self._clock() + seconds
        while not self:
            left = end - self._clock()
            if left <= 0:
                return True
            rem = self.remaining()
            time.sleep(min(tick, left, rem if rem is not None else tick))
        return False

    def run(self, poll: Callable[[int], Any] | None = None, *, interval: float | None = None,
            on_interval: Callable[[], Any] | None = None, tick: float = 0.25) -> str:
        """Call ``poll(timeout_ms)`` until it is time to stop; return why.

        ``poll`` waits at most ``timeout_ms`` milliseconds (at least 1): a
        buffer's ``ring_buffer_poll``, a selector, a process wait (None: just
        sleep).  If it returns ``True`` the loop ends with ``"done"``; other
        return values (an event count, say) are ignored.  The loop also ends
        on a stop signal (``"signal"``) or when the duration is over
        (``"duration"``).  Every ``interval`` seconds from the start of the
        block ``on_interval()`` is called, the last time when the stop comes at
        an interval's end.  Exceptions from ``poll`` and ``on_interval`` propagate.
        """
        if poll is None:
            def poll(ms: int) -> None:
                time.sleep(ms / 1000)
        deadline = self.started + self.duration if self.duration is not None else None
        next_tick = self.started + interval if interval else None
        while True:
            now = self._clock()
            # An interval that ends with the loop is still reported: -d 10 -i 1 prints 10.
            if next_tick is not None and now >= next_tick:
                if on_interval is not None:
                    on_interval()
                next_tick += interval  # type: ignore[operator]
            if self.signal is not None:
                return "signal"
            if deadline is not None and now >= deadline:
                return "duration"
            limits = [tick]
            if deadline is not None:
                limits.append(deadline - now)
            if next_tick is not None:
                limits.append(next_tick - now)
            if poll(max(1, round(min(limits) * 1000))) is True:
                return "done"


def stopping(duration: float | None = None, *, signals: Iterable[int] = DEFAULT_SIGNALS,
             clock: Callable[[], float] = time.monotonic) -> Stop:
    """A :class:`Stop` to use as a context manager: while active, ``signals`` set its
    flag instead of killing; it is true once one arrived or ``duration`` seconds
    have passed since the block started."""
    return Stop(duration, signals, clock=clock)


def run_until_stopped(poll: Callable[[int], Any] | None = None, *,
                      duration: float | None = None, interval: float | None = None,
                      on_interval: Callable[[], Any] | None = None, tick: float = 0.25,
                      signals: Iterable[int] = DEFAULT_SIGNALS) -> str:
    """``with stopping(duration) as stop: return stop.run(poll, ...)``; see :meth:`Stop.run`."""
    with stopping(duration, signals=signals) as stop:
        return stop.run(poll, interval=interval, on_interval=on_interval, tick=tick)
