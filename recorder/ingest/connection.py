"""Sans-IO connection policy: sharding, URLs, backoff, the watchdog and the silence check.

Everything here is a pure function or a small class fed with ``now`` (monotonic seconds), so
the rules that decide when a connection is dead, stalled, quiet or due for a handover are tested
with no socket and no sleep. :mod:`recorder.ingest.source` is the thin aiohttp layer that applies
them: it gathers the evidence (frames, a probe's reply, a replacement's first data) and asks.

Quiet or stalled
----------------

A connection silent for ``stall_timeout`` is not closed on that alone: the exchange pushes a
symbol only when its ticker changed, so a connection carrying one quiet symbol (or a few that
went quiet together) is silent while healthy. The source starts a :class:`SilenceCheck`: it
sends a ``LIST_SUBSCRIPTIONS`` probe on the silent connection and opens a replacement beside it,
then decides from what happens (first rule that matches):

1. the silent connection delivers data again: ``QUIET``, it is kept;
2. the replacement delivers data and the silent connection has not delivered that same data
   within :data:`SAME_DATA_GRACE`: ``STALLED``, data exists that the silent connection withholds;
   the replacement becomes the connection;
3. the probe was answered and, by the end of the window (``handover_timeout``), the replacement
   delivered nothing either, or could not be opened: ``QUIET``, the connection is alive and its
   symbols have nothing to say; the replacement is closed;
4. the probe was not answered by the end of the window: ``STALLED``, the connection is dead.

A connection that delivered nothing at all for ``first_data_timeout`` after opening is checked
the same way (symbols quiet from the start look like an unrouted URL, and reconnecting helps
neither): kept while it is alive, replaced when its replacement delivers or its probe goes
unanswered.

After a ``QUIET`` outcome the silence allowed before the next check doubles (up to
:data:`MAX_SILENCE_FACTOR` x ``stall_timeout``), so a quiet connection is never replaced, and
checked less and less often; once data flows steadily again it is back to ``stall_timeout``.
"""

import enum
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from recorder.ingest.subscriptions import MAX_REPLY_BYTES, small_reply_object
from recorder.symbols import ALL_MARKET_STREAM, stream_name

SAME_DATA_GRACE: Final = 1.0
"""Seconds the silent connection may lag its replacement delivering the same event."""
MAX_SILENCE_FACTOR: Final = 8
"""The most ``stall_timeout`` is multiplied by after quiet checks."""
MAX_PROBE_REPLY_BYTES: Final = MAX_REPLY_BYTES
"""A ``LIST_SUBSCRIPTIONS`` reply for 1024 streams is well under this; larger is not one."""


def plan_shards(symbols: Sequence[str], max_streams_per_connection: int) -> list[tuple[str, ...]]:
    """Split ``symbols`` into the fewest consecutive groups that respect the limit, balanced.

    Groups hold at most ``max_streams_per_connection`` symbols and their sizes differ by at
    most one, the larger ones first.

    Binance allows at most 200 streams per connection; more symbols mean more connections.
    Balanced, no connection is left with a handful of symbols (201 symbols are 101 + 100, not
    200 + 1): a connection carrying few symbols is often silent as a whole while healthy.

    >>> plan_shards(["A", "B", "C"], 2)
    [('A', 'B'), ('C',)]
    >>> [len(shard) for shard in plan_shards([str(n) for n in range(201)], 200)]
    [101, 100]
    """
    if max_streams_per_connection < 1:
        msg = f"max_streams_per_connection must be >= 1, got {max_streams_per_connection}"
        raise ValueError(msg)
    count = -(-len(symbols) // max_streams_per_connection)
    if count == 0:
        return []
    size, larger = divmod(len(symbols), count)
    shards = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < larger else 0)
        shards.append(tuple(symbols[start:end]))
        start = end
    return shards


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


def all_market_stream_url(base_url: str) -> str:
    """Return the combined-stream URL of the all-market ``!miniTicker@arr`` stream.

    One stream carries every contract, so the URL is the same whatever is recorded.

    >>> all_market_stream_url("wss://fstream.binance.com/market/")
    'wss://fstream.binance.com/market/stream?streams=!miniTicker@arr'
    """
    return f"{base_url.rstrip('/')}/stream?streams={ALL_MARKET_STREAM}"


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
    """Why the watchdog wants a connection ended, checked or replaced."""

    NO_DATA = "no_data"
    """Nothing at all arrived since the connection opened: an unrouted URL does this, and so do
    symbols quiet from the start; a silence check tells a dead connection from a live one."""
    SILENT = "silent"
    """Data flowed, then stopped for the allowed silence: check whether quiet or stalled."""
    HANDOVER_DUE = "handover_due"
    """The connection reached its planned lifetime: open a replacement, then close this one."""


@dataclass(slots=True)
class ConnectionWatchdog:
    """Tracks one connection's liveness from the times frames arrive.

    Args:
        opened_at: monotonic time the handshake completed.
        first_data_timeout: seconds without any frame after opening that mean ``NO_DATA``.
        stall_timeout: seconds without a frame, after the first one, that mean ``SILENT``
            (multiplied by :attr:`silence_factor` once silences were found quiet).
        lifetime: seconds after opening at which a planned handover is due.
    """

    opened_at: float
    first_data_timeout: float
    stall_timeout: float
    lifetime: float
    last_data_at: float | None = None
    handover_requested: bool = False
    check_requested: bool = False
    """A silence check is running: ``SILENT`` is not repeated until it ends."""
    checked_at: float | None = None
    """When the last silence check found the connection quiet; silence counts from then."""
    silence_factor: int = 1

    def on_data(self, now: float) -> None:
        """Record that a frame arrived at ``now``.

        Data flowing steadily again (two frames less than ``stall_timeout`` apart) ends a
        quiet spell: the silence allowed goes back to ``stall_timeout``, so a stall of a busy
        connection is found as fast as before its symbols went quiet.
        """
        last = self.last_data_at
        if self.silence_factor > 1 and last is not None and now - last < self.stall_timeout:
            self.silence_factor = 1
        self.last_data_at = now

    @property
    def allowed_silence(self) -> float:
        """Seconds without data, after the first, before a silence check."""
        return self.stall_timeout * self.silence_factor

    def quiet_confirmed(self, now: float) -> None:
        """A silence check found the connection alive and quiet at ``now``: check later."""
        self.check_requested = False
        self.checked_at = now
        self.silence_factor = min(2 * self.silence_factor, MAX_SILENCE_FACTOR)

    def verdict(self, now: float) -> Verdict | None:
        """Return what is wrong with the connection at ``now``, or None while it is healthy.

        A dead connection outranks a due handover: replacing it is then unplanned.
        """
        if self.last_data_at is None and self.checked_at is None:
            if not self.check_requested and now - self.opened_at >= self.first_data_timeout:
                return Verdict.NO_DATA
        elif not self.check_requested and now >= self._silence_deadline():
            return Verdict.SILENT
        if not self.handover_requested and now - self.opened_at >= self.lifetime:
            return Verdict.HANDOVER_DUE
        return None

    def next_check_at(self) -> float:
        """Return the earliest monotonic time at which :meth:`verdict` could change."""
        deadlines = []
        if self.check_requested:
            pass  # the running check decides
        elif self.last_data_at is None and self.checked_at is None:
            deadlines.append(self.opened_at + self.first_data_timeout)
        else:
            deadlines.append(self._silence_deadline())
        if not self.handover_requested:
            deadlines.append(self.opened_at + self.lifetime)
        return min(deadlines, default=float("inf"))

    def _silence_deadline(self) -> float:
        """When the silence since the last frame, or since the last quiet verdict, is due."""
        since = max(t for t in (self.last_data_at, self.checked_at) if t is not None)
        return since + self.allowed_silence


class SilenceOutcome(enum.Enum):
    """What a :class:`SilenceCheck` found."""

    QUIET = "quiet"
    """The connection is alive; its symbols had nothing to push. Keep it."""
    STALLED = "stalled"
    """Data is withheld from the connection, or it is dead. Replace it."""


@dataclass(slots=True)
class SilenceCheck:
    """Tells a quiet connection from a stalled one, from evidence; see the module docstring.

    The source reports what it observes (``*_at`` fields, monotonic seconds) and asks
    :meth:`decide`.

    Args:
        started_at: when the probe was sent and the replacement asked for.
        window: seconds the replacement and the probe have to show something.
        grace: seconds the silent connection may lag its replacement with the same data.
    """

    started_at: float
    window: float
    grace: float = SAME_DATA_GRACE
    probe_answered_at: float | None = None
    old_data_at: float | None = None
    """When the silent connection delivered data again, if it did."""
    replacement_data_at: float | None = None
    replacement_failed: bool = False
    """The replacement could not be opened, or ended before delivering."""

    def decide(self, now: float) -> SilenceOutcome | None:
        """Return the outcome at ``now``, or ``None`` while the evidence is not in yet."""
        if self.old_data_at is not None:
            return SilenceOutcome.QUIET
        if self.replacement_data_at is not None and now >= self.replacement_data_at + self.grace:
            return SilenceOutcome.STALLED
        if self.replacement_data_at is not None:
            return None
        window_over = now >= self.started_at + self.window
        if self.probe_answered_at is not None and (self.replacement_failed or window_over):
            return SilenceOutcome.QUIET
        return SilenceOutcome.STALLED if window_over else None

    def next_decision_at(self) -> float:
        """Return the latest time by which :meth:`decide` must be asked again."""
        if self.replacement_data_at is not None:
            return self.replacement_data_at + self.grace
        return self.started_at + self.window


def probe_request(request_id: int) -> str:
    """The ``LIST_SUBSCRIPTIONS`` request the silence check sends as its probe.

    >>> probe_request(7)
    '{"method":"LIST_SUBSCRIPTIONS","id":7}'
    """
    return json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}, separators=(",", ":"))


def is_probe_reply(data: str | bytes, request_id: int) -> bool:
    """Tell whether a frame from the network is the reply to probe ``request_id``.

    Never raises, whatever the frame holds: only a small JSON object whose ``id`` is
    ``request_id`` and that has a ``result`` or an ``error`` counts (an error reply also proves
    the connection alive).

    >>> is_probe_reply('{"result":["btcusdt@miniTicker"],"id":7}', 7)
    True
    >>> is_probe_reply('{"result":[],"id":8}', 7), is_probe_reply(b"[[[", 7)
    (False, False)
    """
    message = small_reply_object(data)
    if message is None:
        return False
    reply_id = message.get("id")
    return (
        type(reply_id) is int
        and reply_id == request_id
        and ("result" in message or "error" in message)
    )
