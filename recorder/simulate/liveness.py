"""What the server enforces over time on one connection, sans-IO: pings, lifetime, message rate.

The classes take ``now`` (seconds on a monotonic clock) and tell what is due or allowed; the
websocket endpoint sends the pings, closes the connection, and counts the messages.
:class:`RequestLog` enforces nothing: it keeps the requests a connection received, so that a
test or a benchmark can judge a client's control traffic from the server's side.
"""

import enum
from collections import Counter, deque

MAX_LOGGED_REQUESTS = 1_000
"""Requests of one connection kept with their times (the counts cover every one)."""


class MessageRateLimiter:
    """Binance's limit of incoming messages per second on one connection (sliding window).

    Every frame counts: requests, pings and pongs alike.

    Args:
        limit: the most messages in any ``window`` seconds.
        window: the window length in seconds.
    """

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._arrivals: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Count one message arriving at ``now``; return ``False`` once it is over the limit."""
        arrivals = self._arrivals
        while arrivals and arrivals[0] <= now - self.window:
            arrivals.popleft()
        arrivals.append(now)
        return len(arrivals) <= self.limit


class RequestLog:
    """The requests (text or binary messages, not pings or pongs) one connection received.

    Binance asks clients to send at most 5 ``SUBSCRIBE`` / ``UNSUBSCRIBE`` messages a second;
    :attr:`peak_per_second` is the most requests received in any ``window`` seconds of the
    connection's life (sliding, as :class:`MessageRateLimiter` counts), whatever their method.

    Args:
        window: the window of :attr:`peak_per_second`, in seconds.
        keep: how many of the latest requests :attr:`latest` keeps.
    """

    def __init__(self, window: float = 1.0, keep: int = MAX_LOGGED_REQUESTS) -> None:
        self.window = window
        self.by_method: Counter[str] = Counter()
        """Requests by method; ``invalid`` for a message that is no well-formed request."""
        self.peak_per_second = 0
        self.latest: deque[tuple[int, str]] = deque(maxlen=keep)
        """``(wall ms, method)`` of the latest requests, oldest first."""
        self._recent: deque[float] = deque()

    def note(self, method: str, now: float, at_ms: int) -> None:
        """Count one request of ``method`` received at ``now`` (monotonic) and ``at_ms`` (wall).

        >>> log = RequestLog()
        >>> for now in (0.0, 0.5, 0.9, 1.6):
        ...     log.note("SUBSCRIBE", now, round(now * 1000))
        >>> log.peak_per_second, dict(log.by_method), log.latest[-1]
        (3, {'SUBSCRIBE': 4}, (1600, 'SUBSCRIBE'))
        """
        self.by_method[method] += 1
        self.latest.append((at_ms, method))
        recent = self._recent
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        recent.append(now)
        self.peak_per_second = max(self.peak_per_second, len(recent))


class KeepaliveAction(enum.Enum):
    """What the server owes a connection at a given moment."""

    PING = "ping"
    PONG_OVERDUE = "pong_overdue"
    LIFETIME_OVER = "lifetime_over"


class Keepalive:
    """Server-side liveness of one connection: pings, pong deadline, maximum lifetime.

    Only a pong echoing an outstanding ping's payload counts; unsolicited pongs do not keep a
    connection alive (Binance says the same).

    Args:
        opened_at: when the connection opened (monotonic seconds).
        ping_interval: seconds between pings.
        pong_timeout: seconds a ping may stay unanswered.
        lifetime: seconds after which the connection is closed.
    """

    def __init__(
        self, opened_at: float, ping_interval: float, pong_timeout: float, lifetime: float
    ) -> None:
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.closes_at = opened_at + lifetime
        self.next_ping_at = opened_at + ping_interval
        self._unanswered: dict[bytes, float] = {}
        self._pings_sent = 0

    @property
    def pong_deadline(self) -> float | None:
        """When the oldest unanswered ping times out, or ``None`` when all were answered."""
        if not self._unanswered:
            return None
        return min(self._unanswered.values()) + self.pong_timeout

    def next_deadline(self) -> float:
        """The next moment :meth:`due` may return an action."""
        deadlines = [self.closes_at, self.next_ping_at]
        if (pong_deadline := self.pong_deadline) is not None:
            deadlines.append(pong_deadline)
        return min(deadlines)

    def due(self, now: float) -> KeepaliveAction | None:
        """Return what is due at ``now``, the most severe first, or ``None``."""
        if now >= self.closes_at:
            return KeepaliveAction.LIFETIME_OVER
        pong_deadline = self.pong_deadline
        if pong_deadline is not None and now >= pong_deadline:
            return KeepaliveAction.PONG_OVERDUE
        if now >= self.next_ping_at:
            return KeepaliveAction.PING
        return None

    def ping_sent(self, now: float) -> bytes:
        """Record a ping sent at ``now`` and return the payload to send with it."""
        self._pings_sent += 1
        payload = str(self._pings_sent).encode()
        self._unanswered[payload] = now
        self.next_ping_at = now + self.ping_interval
        return payload

    def ping_skipped(self, now: float) -> None:
        """Record that the ping due at ``now`` was not sent (a fault silenced the server)."""
        self.next_ping_at = now + self.ping_interval

    def pong_received(self, payload: bytes) -> bool:
        """Record a pong; return whether it answered an outstanding ping.

        A pong answers its ping and every earlier one: the client is alive.
        """
        sent_at = self._unanswered.get(payload)
        if sent_at is None:
            return False
        self._unanswered = {key: when for key, when in self._unanswered.items() if when > sent_at}
        return True
