"""The write-ahead batch of one flush: built from events in partition order, cut by partition.

:meth:`~recorder.storage.writer.DatasetWriter.write_ahead` logs one Arrow batch per flush,
whatever the number of symbols. Its rows are ordered by symbol and event time, so each
partition's rows are one contiguous run of rows, and :func:`split_by_partition` can hand every
partition its rows as a zero-copy slice.
"""

import dataclasses
import itertools
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from recorder.clock import MS_PER_DAY, event_date
from recorder.errors import DecodeError
from recorder.model import MiniTicker, Rejection
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import DATE_COLUMN, SYMBOL_COLUMN, build_wal_batch, data_columns
from recorder.symbols import is_valid_symbol


def build_flush_batch(events: Sequence[MiniTicker], rejections: list[Rejection]) -> pa.RecordBatch:
    """Build the write-ahead batch of ``events``; unstorable events go to ``rejections``.

    Rows are ordered by symbol and event time, so each partition is one contiguous slice.

    Args:
        events: one flush worth of events, in any order.
        rejections: where events that cannot be stored are appended (a symbol unsafe as a
            directory name, a value that does not fit its column).

    Returns:
        The batch of every storable event, possibly empty.
    """
    ordered = sorted(events, key=lambda event: (event.symbol, event.event_time))
    storable = []
    for event in ordered:
        if is_valid_symbol(event.symbol):
            storable.append(event)
        else:
            rejections.append(_reject(event, "unsafe_symbol: not valid as a partition value"))
    try:
        return build_wal_batch(storable)
    except DecodeError:
        pass
    # Rare: the decoder let through a value that does not fit; find it, keep the others.
    fitting = []
    for event in storable:
        try:
            build_wal_batch([event])
        except DecodeError as exc:
            rejections.append(_reject(event, str(exc)))
        else:
            fitting.append(event)
    return build_wal_batch(fitting)


def _reject(event: MiniTicker, reason: str) -> Rejection:
    # The frame's text is gone by now: the event's fields stand in for it.
    raw = json.dumps(dataclasses.asdict(event), ensure_ascii=False)
    return Rejection(raw=raw, reason=reason, receive_time=event.receive_time)


def newest_event_ms(batch: pa.RecordBatch) -> int:
    """The newest ``E`` in a non-empty write-ahead batch, in milliseconds since the epoch."""
    newest: int = pc.max(batch.column("event_time").cast(pa.int64())).as_py()
    return newest


def split_by_partition(batch: pa.RecordBatch) -> list[tuple[PartitionKey, pa.RecordBatch]]:
    """Cut a write-ahead batch into per-partition data slices, without copying.

    Consecutive rows of one partition form one slice; a batch sorted by symbol and event time
    (as :func:`build_flush_batch` builds them) yields one slice per partition.
    """
    symbols = batch.column(SYMBOL_COLUMN).to_pylist()
    days = batch.column(DATE_COLUMN).cast(pa.int32()).to_pylist()
    data = data_columns(batch)
    pieces = []
    start = 0
    for (symbol, day), group in itertools.groupby(zip(symbols, days, strict=True)):
        length = sum(1 for _ in group)
        date = event_date(day * MS_PER_DAY)
        pieces.append((PartitionKey(date, symbol), data.slice(start, length)))
        start += length
    return pieces
