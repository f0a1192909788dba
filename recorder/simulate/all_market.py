"""The cadence of ``!miniTicker@arr``, sans-IO: which events each one-second array carries, when.

Binance pushes the all-market array every 1000 ms with the tickers that changed in that second,
whatever the per-symbol streams' pace. The simulator's seconds count from ``start_ms``, as its
ticks do: array ``k`` carries every event whose ``E`` is in
``[start_ms + 1000 k, start_ms + 1000 (k + 1))``, each event in exactly one array. An array can
go out only once every tick that may put an event in its second has been generated, and a tick
is generated when its interval is over; so every array waits the same lag after its second
ends, the longest any second has to wait (:func:`array_lag_ms`), and the arrays keep a steady
1 s pace. A second in which nothing changed gives an empty array: the pace is what a client
sees of Binance, where some ticker always changes.
"""

import math
from collections.abc import Iterable

from recorder.simulate.ledger import LedgerEntry

ARRAY_PERIOD_MS = 1_000
"""Binance's update speed of ``!miniTicker@arr``."""


def array_lag_ms(interval_ms: int) -> int:
    """How long after its second ends every array waits for the ticks that fill it.

    A second ending ``e`` ms after ``start_ms`` is complete at the first tick boundary at or
    after ``e``; over all seconds that is at most ``interval_ms - gcd(interval_ms, 1000)`` late.

    >>> array_lag_ms(2_000), array_lag_ms(1_000), array_lag_ms(500), array_lag_ms(300)
    (1000, 0, 0, 200)
    """
    return interval_ms - math.gcd(interval_ms, ARRAY_PERIOD_MS)


class ArrayWindows:
    """Generated events held by the second their ``E`` falls in, until that second's array.

    Args:
        start_ms: ``E`` of tick 0 before jitter; second 0 starts there.
        interval_ms: simulated milliseconds between two ticks.
    """

    def __init__(self, start_ms: int, interval_ms: int) -> None:
        self.start_ms = start_ms
        self.interval_ms = interval_ms
        self.lag_ms = array_lag_ms(interval_ms)
        self._held: dict[int, list[LedgerEntry]] = {}

    def window_of(self, event_time: int) -> int:
        """The second an event belongs to, counted from ``start_ms``."""
        return (event_time - self.start_ms) // ARRAY_PERIOD_MS

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        """Hold a tick's events for the arrays of their seconds."""
        for entry in entries:
            self._held.setdefault(self.window_of(entry.event.event_time), []).append(entry)

    def due_ms(self, window: int) -> int:
        """The simulated time array ``window`` goes out: its second's end plus the lag."""
        return self.start_ms + (window + 1) * ARRAY_PERIOD_MS + self.lag_ms

    def ticks_needed(self, window: int) -> int:
        """How many ticks must have been generated before array ``window`` is complete.

        >>> ArrayWindows(0, 2_000).ticks_needed(0), ArrayWindows(0, 2_000).ticks_needed(1)
        (1, 1)
        """
        end = (window + 1) * ARRAY_PERIOD_MS
        return -(-end // self.interval_ms)

    def take(self, window: int) -> list[LedgerEntry]:
        """Release the events of array ``window``, in generation order (none: an empty array)."""
        return self._held.pop(window, [])
