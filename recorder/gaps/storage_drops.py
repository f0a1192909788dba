"""Gaps of cause ``storage``: events received, then given up in a storage outage; sans-IO.

When storage refuses writes for longer than the memory budget allows, the service drops the
oldest events not yet durable (:meth:`recorder.storage.writer.DatasetWriter.drop_oldest_pending`)
and reports them here. A hole in a symbol's recording then runs from the newest event of that
symbol that did become durable before the dropped ones (``from_ms``) to the first one that
becomes durable after them (``to_ms``), like every other gap: ``missed`` follows the same
formula, so it counts the dropped updates (and any the exchange never sent in between).

The record is written once the closing event is known and *before* that event becomes
durable (the service asks :meth:`StorageDrops.close` with the oldest event of the symbol it
holds, and logs nothing while the record is not durable), so a crash can over-report a storage
gap but never lose one. From then on the closing event is :attr:`StorageDrops.protected`: later
drops spare it, so the gap always ends on an event the dataset has. A hole still open when the
recorder stops is covered by the ``restart`` gap of the next start: the persisted state holds
the newest *durable* event, not the newest received.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from recorder.gaps.detector import DEFAULT_INTERVAL_MS, Gap, GapCause, missed_updates


@dataclass(slots=True)
class _OpenDrop:
    from_ms: int
    rows: int


class StorageDrops:
    """The open storage holes per symbol, and the newest durable ``E`` per symbol.

    Args:
        interval_ms: the nominal update interval.
        last_durable: the newest durable ``E`` per symbol when recording starts (the restored
            state).
    """

    def __init__(
        self, interval_ms: int = DEFAULT_INTERVAL_MS, last_durable: Mapping[str, int] = {}
    ) -> None:
        self._interval_ms = interval_ms
        self._last_durable = dict(last_durable)
        self._open: dict[str, _OpenDrop] = {}
        self._closing: dict[str, set[int]] = {}

    @property
    def last_durable(self) -> Mapping[str, int]:
        """The newest durable ``E`` per symbol: what the state file may claim."""
        return self._last_durable

    @property
    def open_holes(self) -> Mapping[str, int]:
        """Where each open hole starts, per symbol with dropped events not yet followed.

        The event that closes a hole is the first one held after that ``E``.
        """
        return {symbol: hole.from_ms for symbol, hole in self._open.items()}

    @property
    def protected(self) -> Mapping[str, frozenset[int]]:
        """Per symbol, the ``E`` of each event that ends a logged storage gap, until durable."""
        return {symbol: frozenset(times) for symbol, times in self._closing.items()}

    def durable(self, symbol: str, last_ms: int) -> None:
        """Note that events of ``symbol`` up to ``last_ms`` are durable."""
        if last_ms > self._last_durable.get(symbol, last_ms - 1):
            self._last_durable[symbol] = last_ms
        closing = self._closing.get(symbol)
        if closing is not None:
            closing -= {time for time in closing if time <= last_ms}
            if not closing:
                del self._closing[symbol]

    def dropped(self, symbol: str, rows: int, first_ms: int) -> None:
        """Note that ``rows`` events of ``symbol``, the oldest at ``first_ms``, were dropped.

        >>> drops = StorageDrops(2000, {"BTCUSDT": 10_000})
        >>> drops.dropped("BTCUSDT", 3, 12_000)
        >>> drops.dropped("BTCUSDT", 2, 18_000)
        >>> gap = drops.close("BTCUSDT", 22_000, now_us=0)
        >>> (gap.from_ms, gap.to_ms, gap.missed, gap.cause.value)
        (10000, 22000, 5, 'storage')
        """
        hole = self._open.get(symbol)
        if hole is None:
            # With no durable event of the symbol yet, the hole starts one interval before the
            # first dropped event, so that ``missed`` still counts it.
            # A closing event not yet durable is kept (protected): the new hole starts there.
            before = max(self._last_durable.get(symbol, 0), *self._closing.get(symbol, {0}))
            if not 0 < before < first_ms:
                before = first_ms - self._interval_ms
            self._open[symbol] = _OpenDrop(before, rows)
        else:
            hole.rows += rows

    def close(self, symbol: str, to_ms: int, *, now_us: int) -> Gap | None:
        """End ``symbol``'s open hole at the event ``to_ms`` about to be logged; its gap.

        Returns:
            The gap to log, or ``None`` when ``symbol`` has no open hole.
        """
        hole = self._open.pop(symbol, None)
        if hole is None:
            return None
        self._closing.setdefault(symbol, set()).add(to_ms)
        missed = missed_updates(hole.from_ms, to_ms, self._interval_ms)
        return Gap(symbol, hole.from_ms, to_ms, missed, GapCause.STORAGE, now_us)
