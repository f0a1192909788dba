"""Gap detection, sans-IO: which updates of a symbol were missed, and why.

The exchange stamps every miniTicker push with its event time ``E``. With the documented update
interval (``interval``, 2000 ms by default) the number of updates missed between two
consecutive events of one symbol is::

    missed = round((E_next - E_prev) / interval) - 1

rounding an exact half *up* (Python's :func:`round` would round it to even): a delta of
exactly 1.5 intervals counts as one missed update, 2.5 intervals as two. Rounding half up errs
on the side of reporting, which is what an operator who trusts "no gap" needs. When ``missed``
is 1 or more, the detector reports one :class:`Gap` from ``E_prev`` to ``E_next``.

How the cause is decided
------------------------

The detector is fed, in stream order, every connection event of the source
(:meth:`GapDetector.on_connection`), every frame a connection delivers before it is decoded
(:meth:`GapDetector.on_frame`), and every de-duplicated event with the connection that
delivered it (:meth:`GapDetector.observe`). For a gap of symbol ``S`` between ``E_prev``,
delivered by connection ``X``, and ``E_next``, the first rule that matches wins:

1. ``restart``: ``E_prev`` was not received by this process but restored from the state the
   recorder persisted before it stopped; the recorder itself was not running for (part of) the
   gap.
2. ``disconnect``: ``X`` ended unplanned (``DROPPED``: closed by the peer, a network error, a
   dead peer) before ``E_next`` arrived.
3. ``stall``: ``X`` was ended by the source because its silence check found it stalled
   (``STALLED``): a replacement delivered data that ``X`` did not, or ``X`` left a probe
   unanswered (see below).
4. ``stall``: ``X`` carries several symbols, ``E_next`` arrived on ``X`` itself and ``X``
   delivered no frame at all, for any symbol, in between: the whole connection was silent.
5. ``stall``: ``X`` carries several symbols and was silent as a whole (no event of any symbol)
   for at least half of the gap, and that silence alone is long enough to hide an update. This
   is rule 4 for the other symbols of a connection-wide pause: the first symbol to resume has
   "no frame in between", but every other symbol sees that first frame; without this rule they
   would all be called ``quiet``. Silences are learnt from the event times a connection delivers,
   and only when it delivered no other frame (duplicates, replies) in between, so a connection
   that kept sending duplicates during a handover overlap is not taken for silent.
6. ``quiet``: anything else. The connection kept delivering data of other symbols (the exchange
   pushes a symbol only when its ticker changed, so silence of one symbol is not proof of loss),
   or it carries this one symbol only, or it answered the silence check's probe in between
   (``PROBE_ANSWERED`` counts as a frame), or the symbol moved to another connection through a
   planned handover (``RETIRED``).

Quiet or stall: the evidence
----------------------------

A connection-wide silence is evidence of a stall only when it is shared: several symbols, each
of which the exchange pushes independently, all silent at once (rules 4 and 5). On a connection
that carries a single symbol the connection's silence *is* that symbol's silence, which is what
``quiet`` means, so rules 4 and 5 do not apply to it. What tells a stall there (and on any
connection) is the source's silence check (:mod:`recorder.ingest.connection`): after
``stall_timeout`` without data it sends a ``LIST_SUBSCRIPTIONS`` probe and opens a replacement
beside the silent connection. A replacement that delivers at once while the silent one does not
proves the data exists and is withheld: the silent connection ends ``STALLED`` (rule 3) and the
replacement carries on. A probe that is answered while the replacement has nothing either proves
the connection alive and the symbols quiet: it is kept, and the answer (``PROBE_ANSWERED``,
in stream order with the frames) counts as a frame, so the gaps it falls in are not taken for
a connection-wide silence (rules 4 and 5 see a frame in between). The replacement's frames
reach the detector only after the silent connection's ``STALLED`` end, so every gap they close
is blamed on the stall by rule 3.

Planned handovers never make a gap by themselves: the replacement is delivering before the old
connection is closed, and the overlap is de-duplicated upstream. A missed count of 1 or more
across a handover is therefore ``quiet``.

Events may arrive out of order while two connections overlap. An event older than (or equal to)
the newest one already seen for its symbol neither produces a gap nor moves the symbol's newest
``E`` back.

All-market mode
---------------

With ``[source] mode = "all_market"`` one connection carries the ``!miniTicker@arr`` array of
every contract (``all_market=True``): the rules are the same, read as follows. The array is
pushed every second, so consecutive events of a symbol can be 1 s apart, which the formula
counts as no update missed. A symbol absent from the arrays while they keep coming did not
change: ``quiet`` (rule 6; the arrays are frames in between). A drop is a ``disconnect`` and a
stall a ``stall`` for every recorded symbol that changed meanwhile, at once; after a stall
that heals by itself, the first array carries many symbols and each of them had no frame in
between (rule 4). A silence of the connection is never one symbol's own here, even when one
symbol is recorded: the array carries every contract, and some contract always changes. So
rules 4 and 5 apply to such a connection whatever the number of symbols it is said to carry.

Known limits: a data stall on a one-symbol connection that heals by itself before the silence
check runs is ``quiet`` (nothing distinguishes it from the symbol's own silence); several symbols
on one connection that all go quiet at once look like a stall to rules 4 and 5 until the silence
check's answered probe shows the connection alive (balanced shards, see
:func:`recorder.ingest.connection.plan_shards`, keep such small connections rare).
"""

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from recorder.model import CONNECTION_ENDS, ConnectionChange, ConnectionEvent

DEFAULT_INTERVAL_MS = 2000
"""The update interval Binance documents for ``<symbol>@miniTicker``."""

# Connection-wide silences remembered per connection. A symbol's gap can only be explained by
# silences that began after its previous event; older ones are evicted first, and a gap whose
# silences were evicted falls back to ``quiet``.
_MAX_SILENCES_PER_CONNECTION = 256


class KeyedEvent(Protocol):
    """What the detector reads of an event: whose it is and its ``E``."""

    @property
    def symbol(self) -> str:
        """The contract."""

    @property
    def event_time(self) -> int:
        """``E``, milliseconds since the epoch."""


class GapCause(enum.StrEnum):
    """Why updates of a symbol were missed; see the module documentation for the rules."""

    DISCONNECT = "disconnect"
    """The connection carrying the symbol dropped between the two events."""
    STALL = "stall"
    """The connection stayed open but delivered nothing."""
    RESTART = "restart"
    """The recorder itself was not running; found after a restart from persisted state."""
    QUIET = "quiet"
    """The connection kept delivering, only this symbol was silent: the exchange pushed nothing."""
    STORAGE = "storage"
    """Received, then dropped: storage refused them for longer than the memory budget allows."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Missed updates of one symbol between two consecutive events.

    Attributes:
        symbol: the contract.
        from_ms: ``E`` of the last event before the gap, milliseconds since the epoch, UTC.
        to_ms: ``E`` of the first event after the gap.
        missed: the number of updates missed, at least 1.
        cause: why they were missed.
        detected_at: wall clock when the gap was detected, microseconds since the epoch, UTC.
        connection_id: the connection that carried the symbol before the gap (the one that
            dropped or stalled); ``None`` for a ``restart``, whose previous event was received
            by an earlier run.
        instance_id: the recorder instance that detected it; set when it is logged.
    """

    symbol: str
    from_ms: int
    to_ms: int
    missed: int
    cause: GapCause
    detected_at: int
    connection_id: str | None = None
    instance_id: str | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """``(symbol, from_ms, to_ms)``: what makes two records the same gap."""
        return (self.symbol, self.from_ms, self.to_ms)


def missed_updates(prev_ms: int, next_ms: int, interval_ms: int = DEFAULT_INTERVAL_MS) -> int:
    """Return the updates missed between two consecutive events ``interval_ms`` apart nominally.

    ``round((next_ms - prev_ms) / interval_ms) - 1`` with an exact half rounded up, computed in
    integers (no float error at the boundary); never negative.

    Args:
        prev_ms: ``E`` of the earlier event.
        next_ms: ``E`` of the later event.
        interval_ms: the nominal update interval, positive.

    Raises:
        ValueError: ``interval_ms`` is not positive.

    >>> [missed_updates(0, delta) for delta in (2000, 2999, 3000, 3100, 4000, 5000)]
    [0, 0, 1, 1, 1, 2]
    >>> missed_updates(10_000, 9_000)
    0
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    span = next_ms - prev_ms
    if span <= 0:
        return 0
    # floor(span / interval + 1/2) == round-half-up(span / interval), exactly, in integers.
    return max((2 * span + interval_ms) // (2 * interval_ms) - 1, 0)


@dataclass(slots=True)
class _LastEvent:
    """The newest event seen of one symbol."""

    event_time: int
    connection_id: str | None
    """``None``: restored from persisted state, not received by this process."""
    frames_before: int = 0
    """Frames its connection had delivered when it arrived, itself included."""


@dataclass(slots=True)
class _ConnectionTrack:
    """What the detector knows about one connection."""

    frames: int = 0
    ended: ConnectionChange | None = None
    newest_event_ms: int | None = None
    frames_at_last_event: int = 0
    silences: deque[tuple[int, int]] = field(
        default_factory=lambda: deque(maxlen=_MAX_SILENCES_PER_CONNECTION)
    )
    symbols_last_seen_here: int = 0
    """How many symbols' newest event came from this connection (to forget ended ones)."""
    symbols_carried: int | None = None
    """How many symbols it subscribed, from its connection events; ``None`` until one came."""

    def silent_ms_within(self, start_ms: int, end_ms: int) -> int:
        """Return how much of ``(start_ms, end_ms)`` this connection was known to be silent."""
        total = 0
        for silence_start, silence_end in reversed(self.silences):
            if silence_end <= start_ms:
                break
            total += max(0, min(silence_end, end_ms) - max(silence_start, start_ms))
        return total


class GapDetector:
    """Follows each symbol's ``E`` and reports missed updates with their cause.

    Sans-IO: no clock is read; the caller passes the detection time. Not thread-safe.

    Args:
        interval_ms: the nominal update interval in milliseconds.
        restored: the newest ``E`` of each symbol persisted by earlier runs (see
            :func:`recorder.gaps.state.merged_last_event_times`); a gap after one of these is a
            ``restart``.
        all_market: every connection carries the all-market array, whose silence is never
            one symbol's own (see "All-market mode" above).

    Raises:
        ValueError: ``interval_ms`` is not positive.
    """

    def __init__(
        self,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        restored: Mapping[str, int] | None = None,
        *,
        all_market: bool = False,
    ) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self._interval_ms = interval_ms
        self._miss_x2 = 3 * interval_ms  # twice the shortest span that misses an update
        self._all_market = all_market
        self._last: dict[str, _LastEvent] = {
            symbol: _LastEvent(event_time, None) for symbol, event_time in (restored or {}).items()
        }
        self._connections: dict[str, _ConnectionTrack] = {}

    @property
    def interval_ms(self) -> int:
        """The nominal update interval in milliseconds."""
        return self._interval_ms

    def on_connection(self, event: ConnectionEvent) -> None:
        """Take note of a connection opening, delivering its first data, or ending.

        Only the first end of a connection counts; the connection is forgotten once it has
        ended and no symbol's newest event came from it.
        """
        track = self._track(event.connection_id)
        track.symbols_carried = len(event.symbols)
        if event.change is ConnectionChange.PROBE_ANSWERED:
            # A sign of life counts as a frame: the silence around it is not the connection's.
            track.frames += 1
        if event.change in CONNECTION_ENDS and track.ended is None:
            track.ended = event.change
            self._forget_if_unused(event.connection_id, track)

    def on_frame(self, connection_id: str) -> None:
        """Count one frame delivered by ``connection_id``, whatever it holds.

        Call it for every frame, before decoding and de-duplication, so that the detector knows
        whether a connection delivered anything between two events of a symbol.
        """
        track = self._connections.get(connection_id)
        if track is None:
            track = self._connections[connection_id] = _ConnectionTrack()
        track.frames += 1

    def observe(self, event: KeyedEvent, connection_id: str, detected_at_us: int) -> Gap | None:
        """Follow one de-duplicated event; return the gap it closes, if any.

        Args:
            event: the event, in arrival order.
            connection_id: the connection that delivered it (already counted by
                :meth:`on_frame`).
            detected_at_us: wall clock now, microseconds since the epoch; stamped on the gap.

        Returns:
            The :class:`Gap` between the symbol's previous event and this one when at least one
            update was missed; ``None`` otherwise, and for an out-of-order event.
        """
        track = self._track(connection_id)
        self._learn_silence(track, event.event_time)
        previous = self._last.get(event.symbol)
        if previous is not None and event.event_time <= previous.event_time:
            return None
        gap: Gap | None = None
        if previous is not None and 2 * (event.event_time - previous.event_time) >= self._miss_x2:
            missed = missed_updates(previous.event_time, event.event_time, self._interval_ms)
            if missed >= 1:
                gap = Gap(
                    symbol=event.symbol,
                    from_ms=previous.event_time,
                    to_ms=event.event_time,
                    missed=missed,
                    cause=self._cause(previous, event.event_time, connection_id),
                    detected_at=detected_at_us,
                    connection_id=previous.connection_id,
                )
        self._move_last(event.symbol, previous, event.event_time, connection_id, track)
        return gap

    def forget(self, symbol: str) -> None:
        """Follow ``symbol`` afresh: its next event is its first, never a gap.

        For a contract listed (or listed again) while recording: whatever its newest ``E``
        was, restored or received, the time it was not recorded is no missed update.
        """
        previous = self._last.pop(symbol, None)
        if previous is not None and previous.connection_id is not None:
            track = self._connections.get(previous.connection_id)
            if track is not None:
                track.symbols_last_seen_here -= 1
                self._forget_if_unused(previous.connection_id, track)

    def last_event_times(self) -> dict[str, int]:
        """Return the newest ``E`` of every symbol, received or restored (for the state file)."""
        return {symbol: last.event_time for symbol, last in self._last.items()}

    # -- internals ----------------------------------------------------------------------------

    def _track(self, connection_id: str) -> _ConnectionTrack:
        track = self._connections.get(connection_id)
        if track is None:
            track = self._connections[connection_id] = _ConnectionTrack()
        return track

    def _forget_if_unused(self, connection_id: str, track: _ConnectionTrack) -> None:
        if track.ended is not None and track.symbols_last_seen_here <= 0:
            self._connections.pop(connection_id, None)

    def _learn_silence(self, track: _ConnectionTrack, event_time: int) -> None:
        """Record a connection-wide silence that ``event_time`` ends, if there was one."""
        other_frames = track.frames - track.frames_at_last_event
        newest = track.newest_event_ms
        # More than this event's own frame in between: the connection delivered something
        # (duplicates, replies), so the stretch cannot be proven silent.
        # 2 x span >= 3 x interval: missed_updates() >= 1, without calling it.
        if newest is not None and other_frames <= 1 and 2 * (event_time - newest) >= self._miss_x2:
            track.silences.append((newest, event_time))
        track.frames_at_last_event = track.frames
        if newest is None or event_time > newest:
            track.newest_event_ms = event_time

    def _cause(self, previous: _LastEvent, next_ms: int, connection_id: str) -> GapCause:
        if previous.connection_id is None:
            return GapCause.RESTART
        # Never a fresh track: a connection is kept while a symbol's newest event points at it.
        carrier = self._track(previous.connection_id)
        if carrier.ended is ConnectionChange.DROPPED:
            return GapCause.DISCONNECT
        if carrier.ended is ConnectionChange.STALLED or self._silent_carrier(
            carrier, previous, next_ms, same_connection=previous.connection_id == connection_id
        ):
            return GapCause.STALL
        return GapCause.QUIET

    def _silent_carrier(
        self,
        carrier: _ConnectionTrack,
        previous: _LastEvent,
        next_ms: int,
        *,
        same_connection: bool,
    ) -> bool:
        """Tell whether the carrier was silent as a whole for the gap (rules 4 and 5)."""
        if carrier.symbols_carried == 1 and not self._all_market:
            # Its silence is the symbol's own: no evidence beyond what makes a gap quiet.
            return False
        if same_connection and carrier.frames - previous.frames_before <= 1:
            return True
        span = next_ms - previous.event_time
        silent = carrier.silent_ms_within(previous.event_time, next_ms)
        return 2 * silent >= span and missed_updates(0, silent, self._interval_ms) >= 1

    def _move_last(
        self,
        symbol: str,
        previous: _LastEvent | None,
        event_time: int,
        connection_id: str,
        track: _ConnectionTrack,
    ) -> None:
        if previous is not None and previous.connection_id == connection_id:
            # The same carrier as before, as nearly always: the record moves on in place.
            previous.event_time = event_time
            previous.frames_before = track.frames
            return
        # Count the new reference first: the old and the new connection may be the same.
        track.symbols_last_seen_here += 1
        if previous is not None and previous.connection_id is not None:
            old = self._connections.get(previous.connection_id)
            if old is not None:
                old.symbols_last_seen_here -= 1
                self._forget_if_unused(previous.connection_id, old)
        self._last[symbol] = _LastEvent(event_time, connection_id, track.frames)
