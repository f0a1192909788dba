"""A countdown of armed items: what the next handshakes or requests a fault hits get, in order.

>>> countdown: Countdown[str] = Countdown()
>>> countdown.arm("refuse", 2)
>>> [countdown.take(), countdown.take(), countdown.take()]
['refuse', 'refuse', None]
"""

from typing import Generic, TypeVar

_T = TypeVar("_T")


class Countdown(Generic[_T]):
    """Hands out armed items in order, each for the number of times it was armed."""

    def __init__(self) -> None:
        self._pending: list[tuple[_T, int]] = []

    def arm(self, item: _T, count: int) -> None:
        """Hand ``item`` out the next ``count`` times (after those already armed)."""
        self._pending.append((item, count))

    def take(self) -> _T | None:
        """The next item, or ``None`` when nothing is armed."""
        if not self._pending:
            return None
        item, remaining = self._pending[0]
        if remaining > 1:
            self._pending[0] = (item, remaining - 1)
        else:
            self._pending.pop(0)
        return item

    @property
    def pending(self) -> int:
        """How many times items will still be handed out."""
        return sum(remaining for _, remaining in self._pending)
