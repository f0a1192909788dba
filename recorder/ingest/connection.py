"""Sans-IO connection policy: sharding, URLs, backoff and the watchdog verdicts.

Everything here is a pure function or a small class fed with ``now`` (monotonic seconds), so
the rules that decide when a connection is dead, stalled or due for a handover are tested with no
socket and no sleep. :mod:`recorder.ingest.source` is the thin aiohttp layer that applies them.
"""

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from recorder.symbols import stream_name


def plan_shards(symbols: Sequence[str], max_streams_per_connection: int) -> list[tuple[str, ...]]:
    """Split ``symbols`` into consecutive groups of at most ``max_streams_per_connection``.

    Binance allows at most 200 streams per connection; more symbols mean more connections.

    >>> plan_shards(["A", "B", "C"], 2)
    [('A', 'B'), ('C',)]
    """
    if max_streams_per_connection < 1:
        msg = f"max_streams_per_connection must be >= 1, got {max_streams_per_connection}"
        raise ValueError(msg)
    return [
        tuple(symbols[start : start + max_streams_per_connection])
        for start in range(0, len(symbols), max_streams_per_connection)
    ]


def combined_stream_url(base_url: str, symbols: Sequence[str]) -> str:
    """Return the combined-stream URL for ``symbols`` under ``base_url``.

    Stream names are percent-encoded (a symbol may be non-ASCII); ``@`` and the ``/`` that
    separates streams stay literal, as Binance expects.

    >>> combined_stream_url("wss://fstream.binance.com/market", ["BTCUSDT", "ETHUSDT"])
    'wss://fstream.binance.com/market/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker'
    >>> combined_stream_url("ws://127.0.0.1:1/market", ["币安人生USDT"])
    'ws://127.0.0.1:1/market/stream?streams=%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@miniTicker'
    """
    streams = "/".join(quote(stream_name(symbol), safe="@") for symbol in symbols)
    return f"{base_url.rstrip('/')}/stream?streams={streams}"


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Return the wait before reconnect attempt number ``attempt`` (0-based).

    Capped exponential growth with "equal jitter": half the capped delay is fixed, half is
    random, so many recorders that lost the same exchange never reconnect in lockstep (the storm
    that gets an IP banned) and no attempt ever retries with zero delay.

    >>> rng = random.Random(1)
    >>> [round(backoff_delay(n, 1.0, 8.0, rng), 2) for n in range(6)]
    [0.57, 1.85, 3.53, 5.02, 5.98, 5.8]
    """
    capped = min(maximum, initial * (1 << min(attempt, 62)))
    return capped / 2 + rng.uniform(0, capped / 2)


class Verdict(enum.Enum):
    """Why the watchdog wants a connection ended or replaced."""

    NO_DATA = "no_data"
    """Nothing at all arrived since the connection opened (an unrouted URL does this)."""
    STALLED = "stalled"
    """Data flowed, then stopped while the connection stayed open."""
    HANDOVER_DUE = "handover_due"
    """The connection reached its planned lifetime: open a replacement, then close this one."""


@dataclass(slots=True)
class ConnectionWatchdog:
    """Tracks one connection's liveness from the times frames arrive.

    Args:
        opened_at: monotonic time the handshake completed.
        first_data_timeout: seconds without any frame after opening that mean ``NO_DATA``.
        stall_timeout: seconds without a frame, after the first one, that mean ``STALLED``.
        lifetime: seconds after opening at which a planned handover is due.
    """

    opened_at: float
    first_data_timeout: float
    stall_timeout: float
    lifetime: float
    last_data_at: float | None = None
    handover_requested: bool = False

    def on_data(self, now: float) -> None:
        """Record that a frame arrived at ``now``."""
        self.last_data_at = now

    def verdict(self, now: float) -> Verdict | None:
        """Return what is wrong with the connection at ``now``, or None while it is healthy.

        A dead connection outranks a due handover: replacing it is then unplanned.
        """
        if self.last_data_at is None:
            if now - self.opened_at >= self.first_data_timeout:
                return Verdict.NO_DATA
        elif now - self.last_data_at >= self.stall_timeout:
            return Verdict.STALLED
        if not self.handover_requested and now - self.opened_at >= self.lifetime:
            return Verdict.HANDOVER_DUE
        return None

    def next_check_at(self) -> float:
        """Return the earliest monotonic time at which :meth:`verdict` could change."""
        if self.last_data_at is None:
            liveness = self.opened_at + self.first_data_timeout
        else:
            liveness = self.last_data_at + self.stall_timeout
        if self.handover_requested:
            return liveness
        return min(liveness, self.opened_at + self.lifetime)
