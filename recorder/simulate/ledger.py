"""Ground truth: every event the exchange generated, and which connections got it.

Tests compare the recorded dataset with this: an event delivered to a connection that the
recorder kept open must be in the dataset exactly once; an event withheld by a fault is a gap
the recorder must have logged.
"""

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.simulate.market import MarketEvent


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One generated event and its fate.

    Attributes:
        symbol: the contract.
        event_time: ``E``.
        tick: the tick that generated it.
        payload_json: the payload exactly as sent.
        delivered_to: ids of the connections it was written to, in order.
        withheld_from: ids of subscribed connections a ``stall`` or ``blackhole`` kept it from.
    """

    symbol: str
    event_time: int
    tick: int
    payload_json: str
    delivered_to: tuple[str, ...]
    withheld_from: tuple[str, ...]

    @property
    def payload(self) -> dict[str, object]:
        """The payload as a JSON object."""
        payload: dict[str, object] = json.loads(self.payload_json)
        return payload

    def to_json(self) -> dict[str, object]:
        """Describe the record as ``GET /_sim/events`` lists it."""
        return {
            "symbol": self.symbol,
            "E": self.event_time,
            "tick": self.tick,
            "payload": self.payload,
            "delivered_to": list(self.delivered_to),
            "withheld_from": list(self.withheld_from),
        }


class LedgerEntry:
    """The mutable fate of one event while connections are still being served."""

    __slots__ = ("delivered_to", "event", "withheld_from")

    def __init__(self, event: MarketEvent) -> None:
        self.event = event
        self.delivered_to: list[str] = []
        self.withheld_from: list[str] = []

    def freeze(self) -> EventRecord:
        """Return an immutable snapshot."""
        event = self.event
        return EventRecord(
            symbol=event.symbol,
            event_time=event.event_time,
            tick=event.tick,
            payload_json=event.payload_json,
            delivered_to=tuple(self.delivered_to),
            withheld_from=tuple(self.withheld_from),
        )


class EventLedger:
    """Keeps the newest ``limit`` generated events and their deliveries.

    Args:
        limit: the most events kept; older ones are forgotten and counted in ``forgotten``.
    """

    def __init__(self, limit: int) -> None:
        self._entries: deque[LedgerEntry] = deque(maxlen=limit)
        self.forgotten = 0
        self.recorded = 0

    def record(self, events: Iterable[MarketEvent]) -> list[LedgerEntry]:
        """Add generated events; return their entries for marking deliveries."""
        entries = [LedgerEntry(event) for event in events]
        capacity = self._entries.maxlen or 0
        self.forgotten += max(0, len(self._entries) + len(entries) - capacity)
        self.recorded += len(entries)
        self._entries.extend(entries)
        return entries

    def events(
        self, symbol: str | None = None, connection_id: str | None = None
    ) -> list[EventRecord]:
        """Return the kept events in generation order.

        Args:
            symbol: only this symbol's events.
            connection_id: only events delivered to or withheld from this connection.
        """
        return [
            entry.freeze()
            for entry in self._entries
            if (symbol is None or entry.event.symbol == symbol)
            and (
                connection_id is None
                or connection_id in entry.delivered_to
                or connection_id in entry.withheld_from
            )
        ]
