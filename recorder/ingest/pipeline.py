"""The sans-IO middle of the data path: frames in; events, rejections and gaps out.

The service feeds every item the source queued (frames and connection events, in arrival
order) to one :class:`EventPipeline`; the flush scheduler takes what accumulated with
:meth:`EventPipeline.take` and hands it to storage. No socket, file or clock in here: times come
from the items themselves.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from recorder.event_columns import EventColumns, TickerPayload
from recorder.gaps.detector import Gap, GapDetector
from recorder.ingest.decimals import inexact_rows
from recorder.ingest.decode import Decoded, decode_failure, decode_slowly
from recorder.ingest.dedup import DuplicateFilter
from recorder.ingest.event_times import EventTimeGuard
from recorder.ingest.payload import PayloadColumns, PayloadWire
from recorder.ingest.rejections import build_rejection
from recorder.ingest.screen import Screened, screen_frame
from recorder.model import (
    CONNECTION_ENDS,
    ConnectionChange,
    ConnectionEvent,
    ReceivedFrame,
    Rejection,
    reason_code,
)
from recorder.ops.metrics import RecorderMetrics


@dataclass(frozen=True, slots=True)
class FlushBatch:
    """What accumulated since the previous :meth:`EventPipeline.take`: one flush's work.

    Attributes:
        events: de-duplicated events, as columns, in arrival order.
        rejections: frames (or array items) for the quarantine.
        gaps: missed updates detected, each closed by one of ``events`` (or an earlier one).
        last_event_times: the newest ``E`` per symbol as of this take, restored ones included:
            the state persisted with these events.
    """

    events: EventColumns
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
class _Kept:
    """A run's events that passed every check, with their arrival times; and its duplicates."""

    events: list[TickerPayload] = field(default_factory=list)
    receive_times: list[int] = field(default_factory=list)
    duplicates: int = 0
    screened: PayloadColumns | None = None
    """The run's screened payloads as columns, for when ``events`` turn out to be all of them."""
    all_screened: bool = True
    """Whether ``events`` are the screened payloads, all and in order: nothing else happened."""


@dataclass(slots=True)
class _PendingBatch:
    """What is accumulating for the next :class:`FlushBatch`."""

    events: EventColumns = field(default_factory=EventColumns)
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
        event_times: EventTimeGuard[tuple[TickerPayload, ReceivedFrame]] | None = None,
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
        self.feed_all((item,))

    def feed_all(self, items: Sequence[ReceivedFrame | ConnectionEvent]) -> None:
        """Process queued items in order: each run of frames between connection events at once.

        A run is decoded frame by frame, its decimals judged together, then its events go
        through the event-time guard, the duplicate filter and the gap detector in arrival
        order, each frame counted for its connection just before its own events.
        """
        run: list[ReceivedFrame] = []
        for item in items:
            if isinstance(item, ConnectionEvent):
                if run:
                    self._on_frames(run)
                    run = []
                self._on_connection(item)
            else:
                run.append(item)
        if run:
            self._on_frames(run)

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

    def _on_frames(self, frames: Sequence[ReceivedFrame]) -> None:
        kept = _Kept()
        screened = self._screen(frames, kept)
        connections, detector = self.connections, self._detector
        for frame, content in zip(frames, screened, strict=True):
            connection_id = frame.connection_id
            detector.on_frame(connection_id)
            if content is None:
                kept.all_screened = False
                self._on_decoded(frame, self._decode_slowly(frame), kept)
            elif isinstance(content, tuple):
                items, recorded = content
                if items.rows != len(recorded):
                    kept.all_screened = False
                    self._count_not_recorded(items.rows - len(recorded))
                for payload in recorded:
                    self._admit(payload, frame, kept)
            else:
                self._admit(content, frame, kept)
        # Runs end at connection events, so each connection's newest frame is all that counts.
        newest = {frame.connection_id: frame.receive_time for frame in frames}
        for connection_id, receive_time in newest.items():
            connection = connections.get(connection_id)
            if connection is not None:
                connection.last_frame_us = receive_time
        self.counters.frames += len(frames)
        self._store(kept)

    def _screen(self, frames: Sequence[ReceivedFrame], kept: "_Kept") -> list[Screened | None]:
        """The hot path of each frame, its decimals judged for the whole run at once.

        The payloads become columns once (``kept.screened``): the decimals are judged on them,
        and they are what the flush stores when every payload is kept.
        """
        subscribed, limit, all_market = self._subscribed, self._max_frame_bytes, self._all_market
        screened: list[Screened | None] = []
        parts: list[PayloadColumns] = []  # the arrays' columns, and runs of single payloads
        payloads: list[PayloadWire] = []  # single payloads not yet in parts
        owners: list[int] = []  # the frame of each payload, by position
        for position, frame in enumerate(frames):
            try:
                content = screen_frame(
                    frame.data, subscribed=subscribed, max_frame_bytes=limit, all_market=all_market
                )
            # The slow path has the last line for a bug one frame triggers; it decides.
            except Exception:  # noqa: BLE001
                content = None
            screened.append(content)
            if content is None:
                continue
            if isinstance(content, tuple):
                if payloads:
                    parts.append(PayloadColumns(payloads))
                    payloads = []
                parts.append(content[0])
                owners.extend([position] * content[0].rows)
            else:
                payloads.append(content)
                owners.append(position)
        if payloads:
            parts.append(PayloadColumns(payloads))
        if not parts:
            return screened
        columns = kept.screened = PayloadColumns.concat(parts)
        for row in inexact_rows(columns.decimals):
            screened[owners[row]] = None  # the slow path finds the culprit and says why
        return screened

    def _decode_slowly(self, frame: ReceivedFrame) -> Decoded:
        try:
            return decode_slowly(
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
            return decode_failure(
                frame.data, exc, receive_time=frame.receive_time, connection_id=frame.connection_id
            )

    def _on_decoded(self, frame: ReceivedFrame, decoded: Decoded, kept: "_Kept") -> None:
        """What the slow path made of a frame: a control reply, a rejection, events."""
        if decoded.control is not None:
            self.counters.control_replies += 1
        if decoded.rejections:
            self.reject(decoded.rejections)
            self._quarantined = frame
        self._count_not_recorded(decoded.not_recorded)
        for event in decoded.events:
            self._admit(event, frame, kept)

    def _count_not_recorded(self, skipped: int) -> None:
        if skipped:
            self.counters.not_recorded += skipped
            if self._metrics is not None:
                self._metrics.events_not_recorded(skipped)

    def _admit(self, event: TickerPayload, frame: ReceivedFrame, kept: "_Kept") -> None:
        """Judge an event's ``E`` first: an implausible one reaches nothing else."""
        # A suspect E is held until a later event decides (see event_times).
        if self._event_times.accept_plausible(event.event_time, frame.receive_time):
            self._keep(event, frame, kept)
            return
        kept.all_screened = False
        for (held, carrier), reason in self._event_times.admit(
            event.symbol, event.event_time, frame.receive_time, (event, frame)
        ):
            if reason is not None:
                self._reject_event_time(carrier, reason)
            else:
                self._keep(held, carrier, kept)

    def _keep(self, event: TickerPayload, carrier: ReceivedFrame, kept: "_Kept") -> None:
        """De-duplicate an event whose ``E`` was admitted, then keep and gap-check it."""
        if not self._seen.accept(event.symbol, event.event_time):
            kept.duplicates += 1
            kept.all_screened = False
            return
        kept.events.append(event)
        kept.receive_times.append(carrier.receive_time)
        gap = self._detector.observe(event, carrier.connection_id, carrier.receive_time)
        if gap is not None:
            self._pending.gaps.append(gap)
            counters = self.counters
            counters.gaps += 1
            counters.missed += gap.missed
            if self._metrics is not None:
                self._metrics.gap_detected(gap.cause.value, gap.missed)

    def _store(self, kept: "_Kept") -> None:
        """Append a run's kept events to the pending columns; count them once for the run."""
        counters, metrics = self.counters, self._metrics
        if kept.duplicates:
            counters.duplicates += kept.duplicates
            if metrics is not None:
                metrics.duplicate_dropped(kept.duplicates)
        if not kept.events:
            return
        columns = kept.screened
        if kept.all_screened and columns is not None and len(columns) == len(kept.events):
            columns.extend_events(self._pending.events, kept.receive_times)
        else:
            self._pending.events.extend_payloads(kept.events, kept.receive_times)
        counters.events += len(kept.events)
        if metrics is not None:
            metrics.events_received([event.symbol for event in kept.events], kept.receive_times)

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
