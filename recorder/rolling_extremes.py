"""The highest and the lowest value of a sliding window, for the 24 h ``h`` and ``l`` of a ticker.

Two monotonic deques of ``(key, value)``: the highs decreasing and the lows increasing, oldest
first, so the window's extremes are at their fronts. A push drops what the new value outranks
(of equal values the later is kept), an expiry drops the fronts whose key left the window:
each value enters and leaves once, whatever the window's length. The backfill's rebuilt rows
(exact decimals) and the simulator's rolling window (integer ticks) both keep them.
"""

from collections import deque
from typing import Generic, Protocol, Self, TypeVar


class _Ordered(Protocol):
    def __lt__(self, other: Self, /) -> bool: ...

    def __le__(self, other: Self, /) -> bool: ...


V = TypeVar("V", bound=_Ordered)


class RollingExtremes(Generic[V]):
    """The highest and lowest values among those pushed with a key not yet expired.

    >>> window = RollingExtremes[int]()
    >>> for minute, (high, low) in enumerate([(5, 3), (7, 4), (6, 1)]):
    ...     window.push(minute, high, low)
    >>> window.highest, window.lowest
    (7, 1)
    >>> window.expire(2)  # minutes 0 and 1 leave
    >>> window.highest, window.lowest
    (6, 1)

    Args:
        highs: the highs' deque to start from (decreasing values, keys ascending).
        lows: the lows' deque to start from (increasing values, keys ascending).
    """

    __slots__ = ("_highs", "_lows")

    def __init__(
        self,
        highs: deque[tuple[int, V]] | None = None,
        lows: deque[tuple[int, V]] | None = None,
    ) -> None:
        self._highs: deque[tuple[int, V]] = deque() if highs is None else highs
        self._lows: deque[tuple[int, V]] = deque() if lows is None else lows

    def push(self, key: int, high: V, low: V) -> None:
        """Add the high and the low of ``key``, which is not before any key pushed so far."""
        highs, lows = self._highs, self._lows
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((key, high))
        while lows and low <= lows[-1][1]:
            lows.pop()
        lows.append((key, low))

    def expire(self, before: int) -> None:
        """Forget every value of a key before ``before``."""
        highs, lows = self._highs, self._lows
        while highs and highs[0][0] < before:
            highs.popleft()
        while lows and lows[0][0] < before:
            lows.popleft()

    @property
    def highest(self) -> V | None:
        """The highest value in the window; ``None`` when it is empty."""
        return self._highs[0][1] if self._highs else None

    @property
    def lowest(self) -> V | None:
        """The lowest value in the window; ``None`` when it is empty."""
        return self._lows[0][1] if self._lows else None
