"""What a set of write-ahead batches holds, per symbol: how many rows, which ``E`` range.

The service needs this twice per flush, at batch cost rather than per event: for the rows that
just became durable (metrics, the newest durable ``E`` per symbol for the state file, and the
end of a storage gap) and for the rows a storage outage forced it to drop (the ``storage``
gaps and the per-symbol drop counters).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from recorder.storage.schema import SYMBOL_COLUMN


@dataclass(frozen=True, slots=True)
class SymbolRows:
    """One symbol's rows among some write-ahead batches.

    Attributes:
        rows: how many.
        first_ms: the oldest ``E``.
        last_ms: the newest ``E``.
    """

    rows: int
    first_ms: int
    last_ms: int


def rows_by_symbol(batches: Iterable[pa.RecordBatch]) -> dict[str, SymbolRows]:
    """Count the rows of ``batches`` (in the write-ahead schema) per symbol, with their ``E`` range.

    >>> import datetime as dt
    >>> from recorder.storage.schema import WAL_SCHEMA
    >>> batch = pa.RecordBatch.from_pydict(
    ...     {"symbol": ["BTCUSDT", "BTCUSDT"], "event_time": [2000, 4000]},
    ...     schema=pa.schema([WAL_SCHEMA.field("symbol"), WAL_SCHEMA.field("event_time")]),
    ... )
    >>> rows_by_symbol([batch])
    {'BTCUSDT': SymbolRows(rows=2, first_ms=2000, last_ms=4000)}
    """
    tables = [
        pa.table(
            {
                SYMBOL_COLUMN: batch.column(SYMBOL_COLUMN),
                "event_time": batch.column("event_time").cast(pa.int64()),
            }
        )
        for batch in batches
        if batch.num_rows
    ]
    if not tables:
        return {}
    # One Arrow group-by, whatever the number of rows: a flush of the whole market under load
    # holds tens of thousands, and a Python loop over them held the GIL for milliseconds.
    grouped = (
        pa.concat_tables(tables)
        .group_by(SYMBOL_COLUMN, use_threads=False)
        .aggregate([("event_time", "count"), ("event_time", "min"), ("event_time", "max")])
    )
    return {
        symbol: SymbolRows(rows, first, last)
        for symbol, rows, first, last in zip(
            grouped.column(SYMBOL_COLUMN).to_pylist(),
            grouped.column("event_time_count").to_pylist(),
            grouped.column("event_time_min").to_pylist(),
            grouped.column("event_time_max").to_pylist(),
            strict=True,
        )
    }


def split_protected(
    batch: pa.RecordBatch, protect: Mapping[str, frozenset[int]]
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Split ``batch`` into the rows ``protect`` names (symbol and ``E``) and the others."""
    if not protect:
        return batch.slice(0, 0), batch
    symbols = batch.column(SYMBOL_COLUMN).to_pylist()
    times = batch.column("event_time").cast(pa.int64()).to_pylist()
    spared = pa.array(
        [time in protect.get(symbol, ()) for symbol, time in zip(symbols, times, strict=True)]
    )
    return batch.filter(spared), batch.filter(pc.invert(spared))


def first_rows_after(batches: Iterable[pa.RecordBatch], after: Mapping[str, int]) -> dict[str, int]:
    """For each symbol of ``after``, the oldest ``E`` in ``batches`` newer than its value."""
    first: dict[str, int] = {}
    for batch in batches:
        symbols = batch.column(SYMBOL_COLUMN).to_pylist()
        times = batch.column("event_time").cast(pa.int64()).to_pylist()
        for symbol, time in zip(symbols, times, strict=True):
            start = after.get(symbol)
            if start is not None and time > start and time < first.get(symbol, time + 1):
                first[symbol] = time
    return first
