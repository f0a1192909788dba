"""Time sources: monotonic for scheduling, wall clock only for ``receive_time``.

Everything that schedules (flush ticks, watchdogs, backoff, file age) reads ``monotonic()`` so
that a wall-clock step (NTP, a VM resume) never fires or suppresses a timer. Tests pass a
:class:`ManualClock` and move time by hand.
"""

import time
from typing import Protocol


class Clock(Protocol):
    """What the recorder needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        ...

    def wall_us(self) -> int:
        """Microseconds since the Unix epoch, UTC, from the system's wall clock."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def wall_us(self) -> int:
        """Return :func:`time.time_ns` in microseconds."""
        return time.time_ns() // 1000


class ManualClock:
    """A clock that moves only when told to; for tests of time-driven logic.

    Args:
        monotonic: the starting monotonic reading, in seconds.
        wall_us: the starting wall-clock reading, in microseconds since the epoch.
    """

    def __init__(self, monotonic: float = 0.0, wall_us: int = 1_700_000_000_000_000) -> None:
        self._monotonic = monotonic
        self._wall_us = wall_us

    def monotonic(self) -> float:
        """Return the current manual monotonic reading."""
        return self._monotonic

    def wall_us(self) -> int:
        """Return the current manual wall-clock reading."""
        return self._wall_us

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._monotonic += seconds
        self._wall_us += round(seconds * 1_000_000)
