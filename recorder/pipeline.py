"""The sans-IO middle of the data path: frames in, de-duplicated events and rejections out.

The service feeds every item the source queued (frames and connection events, in arrival
order) to one :class:`EventPipeline`; the flush scheduler takes what accumulated with
:meth:`EventPipeline.take` and hands it to storage. No socket, file or clock in here.
"""

from dataclasses import dataclass, field

from recorder.decode import decode_frame
from recorder.dedup import DuplicateFilter
from recorder.logs import get_logger
from recorder.model import ConnectionEvent, MiniTicker, ReceivedFrame, Rejection

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Taken:
    """What accumulated since the previous :meth:`EventPipeline.take`."""

    events: list[MiniTicker]
    rejections: list[Rejection]


@dataclass(slots=True)
class PipelineCounters:
    """Cumulative counts since start, for logs and metrics."""

    frames: int = 0
    events: int = 0
    duplicates: int = 0
    rejections: int = 0
    control_replies: int = 0
    events_by_symbol: dict[str, int] = field(default_factory=dict)


class EventPipeline:
    """Decode, validate and de-duplicate what the source delivers.

    Args:
        symbols: the subscribed symbols; events of any other symbol are rejected.
        max_frame_bytes: frames larger than this are rejected unread.
        dedup_window: event times remembered per symbol for de-duplication.
    """

    def __init__(
        self, symbols: frozenset[str], max_frame_bytes: int, dedup_window: int = 256
    ) -> None:
        self._subscribed = symbols
        self._max_frame_bytes = max_frame_bytes
        self._seen = DuplicateFilter(dedup_window)
        self._events: list[MiniTicker] = []
        self._rejections: list[Rejection] = []
        self.counters = PipelineCounters()

    def feed(self, item: ReceivedFrame | ConnectionEvent) -> None:
        """Process one queued item."""
        if isinstance(item, ConnectionEvent):
            log.debug(
                "connection changed",
                change=item.change.value,
                connection_id=item.connection_id,
                reason=item.reason,
            )
            return
        counters = self.counters
        counters.frames += 1
        decoded = decode_frame(
            item.data,
            receive_time=item.receive_time,
            subscribed=self._subscribed,
            connection_id=item.connection_id,
            max_frame_bytes=self._max_frame_bytes,
        )
        if decoded.control is not None:
            counters.control_replies += 1
        if decoded.rejections:
            counters.rejections += len(decoded.rejections)
            self._rejections.extend(decoded.rejections)
        by_symbol = counters.events_by_symbol
        for event in decoded.events:
            if self._seen.accept(event.symbol, event.event_time):
                self._events.append(event)
                counters.events += 1
                by_symbol[event.symbol] = by_symbol.get(event.symbol, 0) + 1
            else:
                counters.duplicates += 1

    def take(self) -> Taken:
        """Return and forget everything accumulated since the last call."""
        taken = Taken(self._events, self._rejections)
        self._events = []
        self._rejections = []
        return taken
