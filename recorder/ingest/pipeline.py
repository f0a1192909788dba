"""The sans-IO middle of the data path: frames in; events, rejections and gaps out.

The service feeds every item the source queued (frames and connection events, in arrival
order) to one :class:`EventPipeline`; the flush scheduler takes what accumulated with
:meth:`EventPipeline.take` and hands it to storage. No socket, file or clock in here: times come
from the items themselves.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from recorder.gaps.detector import Gap, GapDetector
from recorder.ingest.decode import decode_failure, decode_frame
from recorder.ingest.dedup import DuplicateFilter
from recorder.ingest.event_times import EventTimeGuard
from recorder.ingest.rejections import build_rejection
from recorder.model import (
    CONNECTION_ENDS,
    ConnectionChange,
    ConnectionEvent,
    MiniTicker,
    ReceivedFrame,
    Rejection,
    reason_code,
)
from recorder.ops.metrics import RecorderMetrics


@dataclass(frozen=True, slots=True)
class FlushBatch:
    """What accumulated since the previous :meth:`EventPipeline.take`: one flush's work.

    Attributes:
        events: de-duplicated events in arrival order.
        rejections: frames (or array items) for the quarantine.
        gaps: missed updates detected, each closed by one of ``events`` (or an earlier one).
        last_event_times: the newest ``E`` per symbol as of this take, restored ones included:
            the state persisted with these events.
    """

    events: list[MiniTicker]
    rejections: list[Rejection]
    gaps: list[Gap]
    last_event_times: dict[str, int]


@dataclass(slots=True)
class PipelineCounters:
    """Cumulative counts since start, for logs."""

    frames: int = 0
    events: int = 0
    not_recorded: int = 0
    duplicates: int = 0
    rejections: int = 0
    control_replies: int = 0
    gaps: int = 0
    missed: int = 0


@dataclass(slots=True)
class ConnectionState:
    """What the pipeline knows of one live connection, for health checks.

    Attributes:
        symbols: what it carries.
        last_frame_us: wall clock of its newest frame, or None before the first one.
        quiet_confirmed_us: wall clock of the newest silence check that found it alive and
            quiet, or None.
    """

    symbols: tuple[str, ...]
    last_frame_us: int | None = None
    quiet_confirmed_us: int | None = None

    def alive_at(self, now_us: int, *, fresh_us: float, quiet_us: float) -> bool:
        """Whether it counts as alive at ``now_us``.

        Alive means a frame within ``fresh_us``, or a silence check within ``quiet_us`` that
        found its symbols quiet: a quiet symbol's connection is healthy between the checks
        that vouch for it.
        """
        last_frame, quiet = self.last_frame_us, self.quiet_confirmed_us
        return (last_frame is not None and now_us - last_frame <= fresh_us) or (
            quiet is not None and now_us - quiet <= quiet_us
        )


@dataclass(slots=True)
class _PendingBatch:
    """What is accumulating for the next :class:`FlushBatch`."""

    events: list[MiniTicker] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)


class EventPipeline:
    """Decode, validate, de-duplicate and gap-check what the source delivers; E is judged first.

    Args:
        symbols: the subscribed symbols; events of any other symbol are rejected.
        max_frame_bytes: frames larger than this are rejected unread.
        detector: the gap detector, already restored from persisted state.
        metrics: counters to move, if any.
        dedup_window: event times remembered per symbol for de-duplication.
        event_times: the guard that judges each event's ``E`` before anything else sees it,
            seeded with the restored state; one with the default bound when ``None``.
        all_market: the frames are the all-market array (``[source] mode = "all_market"``):
            each array's items of contracts not in ``symbols`` are skipped and counted, not
            rejected (:mod:`recorder.ingest.market_array`).
    """

    def __init__(
        self,
        symbols: frozenset[str],
        max_frame_bytes: int,
        detector: GapDetector,
        metrics: RecorderMetrics | None = None,
        dedup_window: int = 256,
        *,
        event_times: EventTimeGuard[tuple[MiniTicker, ReceivedFrame]] | None = None,
        all_market: bool = False,
    ) -> None:
        self._subscribed = symbols
        self._all_market = all_market
        self._max_frame_bytes = max_frame_bytes
        self._detector = detector
        self._metrics = metrics
        self._seen = DuplicateFilter(dedup_window)
        self._event_times = event_times or EventTimeGuard()
        self._pending = _PendingBatch()
        self.counters = PipelineCounters()
        self.connections: dict[str, ConnectionState] = {}
        """Connections opened and not yet ended, by id."""
        self._quarantined: ReceivedFrame | None = None
        """The frame quarantined last: another rejection of it makes no second record."""

    def accept(self, symbols: Sequence[str]) -> None:
        """Record ``symbols`` too from now on, each from its next event, without a gap."""
        self._subscribed = self._subscribed | frozenset(symbols)
        for symbol in symbols:
            self._detector.forget(symbol)

    def refuse(self, symbols: Sequence[str]) -> None:
        """Record ``symbols`` no more: their events are rejected as unsubscribed from now on."""
        self._subscribed = self._subscribed - frozenset(symbols)

    def feed(self, item: ReceivedFrame | ConnectionEvent) -> None:
        """Process one queued item."""
        if isinstance(item, ConnectionEvent):
            self._on_connection(item)
        else:
            self._on_frame(item)

    def take(self) -> FlushBatch:
        """Return and forget everything accumulated since the last call."""
        pending = self._pending
        self._pending = _PendingBatch()
        return FlushBatch(
            pending.events,
            pending.rejections,
            pending.gaps,
            self._detector.last_event_times(),
        )

    def _on_connection(self, event: ConnectionEvent) -> None:
        self._detector.on_connection(event)
        metrics = self._metrics
        if event.change is ConnectionChange.OPENED:
            self.connections[event.connection_id] = ConnectionState(event.symbols)
        elif event.change is ConnectionChange.STREAMS_CHANGED:
            state = self.connections.get(event.connection_id)
            if state is not None:
                state.symbols = event.symbols
        elif event.change is ConnectionChange.QUIET_CONFIRMED:
            state = self.connections.get(event.connection_id)
            if state is not None:
                state.quiet_confirmed_us = event.wall_us
        elif event.change in CONNECTION_ENDS:
            was_open = self.connections.pop(event.connection_id, None) is not None
            unplanned = event.change is not ConnectionChange.RETIRED
            if was_open and unplanned and metrics is not None:
                metrics.reconnect(event.change.value)
        if metrics is not None:
            metrics.set_open_connections(len(self.connections))

    def _on_frame(self, frame: ReceivedFrame) -> None:
        counters = self.counters
        counters.frames += 1
        connection = self.connections.get(frame.connection_id)
        if connection is not None:
            connection.last_frame_us = frame.receive_time
        self._detector.on_frame(frame.connection_id)
        try:
            decoded = decode_frame(
                frame.data,
                receive_time=frame.receive_time,
                subscribed=self._subscribed,
                connection_id=frame.connection_id,
                max_frame_bytes=self._max_frame_bytes,
                all_market=self._all_market,
            )
        # The last line: decoding never raises by design, but a bug triggered by one frame
        # must cost that frame (quarantined, counted as decode_failed), never the service.
        except Exception as exc:  # noqa: BLE001
            decoded = decode_failure(
                frame.data, exc, receive_time=frame.receive_time, connection_id=frame.connection_id
            )
        metrics = self._metrics
        if decoded.control is not None:
            counters.control_replies += 1
        if decoded.rejections:
            self.reject(decoded.rejections)
            self._quarantined = frame
        if decoded.not_recorded:
            counters.not_recorded += decoded.not_recorded
            if metrics is not None:
                metrics.events_not_recorded(decoded.not_recorded)
        # An implausible E must reach neither the duplicate filter nor the detector nor
        # storage; a suspect one is held until a later event decides (see event_times).
        guard = self._event_times
        for decoded_event in decoded.events:
            for (event, carrier), reason in guard.admit(
                decoded_event.symbol,
                decoded_event.event_time,
                decoded_event.receive_time,
                (decoded_event, frame),
            ):
                if reason is not None:
                    self._reject_event_time(carrier, reason)
                else:
                    self._keep(event, carrier)

    def _keep(self, event: MiniTicker, carrier: ReceivedFrame) -> None:
        """De-duplicate an event whose ``E`` was admitted, then store and gap-check it."""
        counters, metrics, pending = self.counters, self._metrics, self._pending
        if not self._seen.accept(event.symbol, event.event_time):
            counters.duplicates += 1
            if metrics is not None:
                metrics.duplicate_dropped()
            return
        pending.events.append(event)
        counters.events += 1
        if metrics is not None:
            metrics.event_received(event.symbol, event.receive_time)
        gap = self._detector.observe(event, carrier.connection_id, carrier.receive_time)
        if gap is not None:
            pending.gaps.append(gap)
            counters.gaps += 1
            counters.missed += gap.missed
            if metrics is not None:
                metrics.gap_detected(gap.cause.value, gap.missed)

    def settle(self) -> None:
        """Decide the events still held for their ``E``: on stop, they are quarantined."""
        for (_, carrier), reason in self._event_times.settle():
            self._reject_event_time(carrier, reason)

    @property
    def clock_offset_ms(self) -> int | None:
        """Local clock minus ``E`` of the latest accepted event; ``None`` before the first."""
        return self._event_times.clock_offset_ms

    def _reject_event_time(self, frame: ReceivedFrame, reason: str) -> None:
        rejection = build_rejection(frame.data, reason, frame.receive_time, frame.connection_id)
        if frame is self._quarantined:
            # An all-market array with several bad items, or with bad E too: one record for
            # the frame (it has it already), each rejection still counted by its reason.
            self.count_rejections([rejection])
            return
        self._quarantined = frame
        self.reject([rejection])

    def reject(self, rejections: Sequence[Rejection]) -> None:
        """Count rejections and queue them for the quarantine."""
        self.count_rejections(rejections)
        self._pending.rejections.extend(rejections)

    def count_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Count rejections by reason code (storage rejects a few the decoder let through)."""
        self.counters.rejections += len(rejections)
        if self._metrics is not None:
            for code, count in Counter(reason_code(r.reason) for r in rejections).items():
                self._metrics.frame_quarantined(code, count)
