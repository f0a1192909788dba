"""Dropping events delivered twice, sans-IO.

Two connections carry the same symbol during a planned handover, so the same event arrives
twice; the exchange may also resend an event after a reconnect. An event is identified by
``(symbol, event_time)``: each push of a symbol's ticker has its own ``E``.
"""

from collections import deque


class DuplicateFilter:
    """Remembers the last ``window`` event times of each symbol and rejects repeats.

    Arrival order across two connections is not strictly increasing, so "older than the
    newest seen" would drop real events; an exact-match window does not.

    Args:
        window: event times remembered per symbol. At one event per 2 s, 256 covers more than
            eight minutes of overlap, far more than a handover takes.

    >>> seen = DuplicateFilter(window=2)
    >>> [seen.accept("BTCUSDT", e) for e in (1, 2, 1, 3, 1)]
    [True, True, False, True, True]
    """

    def __init__(self, window: int = 256) -> None:
        if window < 1:
            msg = f"window must be >= 1, got {window}"
            raise ValueError(msg)
        self._window = window
        self._recent: dict[str, tuple[set[int], deque[int]]] = {}
        self.duplicates = 0

    def accept(self, symbol: str, event_time: int) -> bool:
        """Return True the first time ``(symbol, event_time)`` is seen within the window."""
        recent = self._recent.get(symbol)
        if recent is None:
            recent = self._recent[symbol] = (set(), deque())
        members, order = recent
        if event_time in members:
            self.duplicates += 1
            return False
        members.add(event_time)
        order.append(event_time)
        if len(order) > self._window:
            members.discard(order.popleft())
        return True
