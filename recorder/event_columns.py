"""Events as columns: what the pipeline appends to per batch and storage turns into Arrow at once.

One flush of the whole market is thousands of events. Held as one Python object each, they cost
an allocation per event to make and a pass over the objects per column to turn into Arrow; held
as one list per column, a batch of decoded payloads is appended with a list extension per column
and the write-ahead batch is one :func:`pyarrow.array` per column (:mod:`recorder.storage.schema`).

:class:`~recorder.model.MiniTicker` stays the value of *one* event (a backfilled row, a test's
fixture, a rejected row's text): :meth:`EventColumns.of` and :meth:`EventColumns.row` convert.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Final, Protocol, TypeAlias

from recorder.model import MiniTicker


class TickerPayload(Protocol):
    """What a decoded payload offers the columns: the fields of a miniTicker, as received."""

    @property
    def symbol(self) -> str:
        """``s``."""

    @property
    def event_time(self) -> int:
        """``E``, milliseconds since the epoch."""

    @property
    def close(self) -> str:
        """``c``."""

    @property
    def open(self) -> str:
        """``o``."""

    @property
    def high(self) -> str:
        """``h``."""

    @property
    def low(self) -> str:
        """``l``."""

    @property
    def volume(self) -> str:
        """``v``."""

    @property
    def quote_volume(self) -> str:
        """``q``."""

    @property
    def pair(self) -> str | None:
        """``ps``, when sent."""

    @property
    def contract_type(self) -> int | str | None:
        """``st``, when sent: an integer, or a digit string the decoder has checked."""


@dataclass(slots=True, eq=False)
class EventColumns:
    """Events of one flush (or one batch), one list per field, all of one length.

    >>> columns = EventColumns()
    >>> columns.append(MiniTicker("BTCUSDT", 1, "1.5", "1", "2", "1", "10", "15", 7))
    >>> len(columns), columns.close, columns.row(0).quote_volume
    (1, ['1.5'], '15')

    Attributes:
        symbol: ``s`` per event.
        event_time: ``E`` per event, milliseconds since the epoch.
        close: ``c``, as received.
        open: ``o``, as received.
        high: ``h``, as received.
        low: ``l``, as received.
        volume: ``v``, as received.
        quote_volume: ``q``, as received.
        receive_time: local wall clock at arrival, microseconds since the epoch.
        pair: ``ps`` or ``None``.
        contract_type: ``st`` or ``None``.
    """

    symbol: list[str] = field(default_factory=list)
    event_time: list[int] = field(default_factory=list)
    close: list[str] = field(default_factory=list)
    open: list[str] = field(default_factory=list)
    high: list[str] = field(default_factory=list)
    low: list[str] = field(default_factory=list)
    volume: list[str] = field(default_factory=list)
    quote_volume: list[str] = field(default_factory=list)
    receive_time: list[int] = field(default_factory=list)
    pair: list[str | None] = field(default_factory=list)
    contract_type: list[int | None] = field(default_factory=list)

    @classmethod
    def of(cls, events: Iterable[MiniTicker]) -> "EventColumns":
        """The columns of ``events``, in their order."""
        columns = cls()
        for event in events:
            columns.append(event)
        return columns

    def __len__(self) -> int:
        return len(self.event_time)

    def __iter__(self) -> Iterator[MiniTicker]:
        return (self.row(index) for index in range(len(self)))

    def append(self, event: MiniTicker) -> None:
        """Append one event."""
        for name in COLUMN_NAMES:
            getattr(self, name).append(getattr(event, name))

    def extend_payloads(
        self, payloads: Sequence[TickerPayload], receive_times: Sequence[int]
    ) -> None:
        """Append decoded payloads that passed every check, each with its arrival time.

        A contract type sent as a digit string (checked by the decoder) is stored as its
        integer.
        """
        self.symbol.extend([payload.symbol for payload in payloads])
        self.event_time.extend([payload.event_time for payload in payloads])
        self.close.extend([payload.close for payload in payloads])
        self.open.extend([payload.open for payload in payloads])
        self.high.extend([payload.high for payload in payloads])
        self.low.extend([payload.low for payload in payloads])
        self.volume.extend([payload.volume for payload in payloads])
        self.quote_volume.extend([payload.quote_volume for payload in payloads])
        self.receive_time.extend(receive_times)
        self.pair.extend([payload.pair for payload in payloads])
        kinds = [payload.contract_type for payload in payloads]
        self.contract_type.extend(map(stored_contract_type, kinds))

    def row(self, index: int) -> MiniTicker:
        """The event at ``index`` as one value."""
        return MiniTicker(**{name: getattr(self, name)[index] for name in COLUMN_NAMES})

    def take(self, indices: Iterable[int]) -> "EventColumns":
        """A new set of columns of the events at ``indices``, in that order."""
        chosen = list(indices)
        columns = EventColumns()
        for name in COLUMN_NAMES:
            source = getattr(self, name)
            getattr(columns, name).extend([source[index] for index in chosen])
        return columns


def stored_contract_type(kind: int | str | None) -> int | None:
    """``st`` as stored: a digit string the decoder has checked becomes its integer.

    >>> stored_contract_type("2"), stored_contract_type(1), stored_contract_type(None)
    (2, 1, None)
    """
    return int(kind) if isinstance(kind, str) else kind


COLUMN_NAMES: Final = tuple(column.name for column in fields(EventColumns))
"""The columns, in :class:`~recorder.model.MiniTicker`'s field order."""

EventRows: TypeAlias = EventColumns | Sequence[MiniTicker]
"""Events as storage takes them: columns, or (backfilled rows, tests) one value each."""


def as_columns(events: EventRows) -> EventColumns:
    """``events`` as columns, without a copy when they are columns already."""
    return events if isinstance(events, EventColumns) else EventColumns.of(events)
