"""The write-ahead batch of one flush: built from events in partition order, cut by partition.

:meth:`~recorder.storage.writer.DatasetWriter.write_ahead` logs one Arrow batch per flush,
whatever the number of symbols. Its rows are ordered by symbol and event time, so each
partition's rows are one contiguous run of rows: :func:`partition_runs` finds the runs from
the two key columns alone, and :func:`split_by_partition` hands every partition its run as a
zero-copy slice.
"""

import dataclasses
import json
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from recorder.clock import MS_PER_DAY, event_date
from recorder.errors import DecodeError
from recorder.event_columns import EventRows, as_columns
from recorder.model import MiniTicker, Rejection
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import DATE_COLUMN, SYMBOL_COLUMN, build_wal_batch, data_columns
from recorder.symbols import is_known_valid_symbol

log = structlog.get_logger(__name__)

_PARTITION_ORDER: Final = [(SYMBOL_COLUMN, "ascending"), ("event_time", "ascending")]


def build_flush_batch(events: EventRows, rejections: list[Rejection]) -> pa.RecordBatch:
    """Build the write-ahead batch of ``events``; unstorable events go to ``rejections``.

    Rows are ordered by symbol and event time (a stable sort: ties keep their arrival order),
    so each partition is one contiguous slice.

    Args:
        events: one flush worth of events, in any order.
        rejections: where events that cannot be stored are appended (a symbol unsafe as a
            directory name, a value that does not fit its column).

    Returns:
        The batch of every storable event, possibly empty.
    """
    columns = as_columns(events)
    unsafe = {symbol for symbol in set(columns.symbol) if not is_known_valid_symbol(symbol)}
    if unsafe:
        keep = []
        for index, symbol in enumerate(columns.symbol):
            if symbol in unsafe:
                reason = "unsafe_symbol: not valid as a partition value"
                rejections.append(_reject(columns.row(index), reason))
            else:
                keep.append(index)
        columns = columns.take(keep)
    try:
        batch = build_wal_batch(columns)
    except _UNFIT as exc:
        # Rare: the decoder let through a value that does not fit; find it, keep the others.
        if not isinstance(exc, DecodeError):
            log.error("a value reached storage that Arrow cannot hold", error=_unfit_reason(exc))
        fitting = []
        for index in range(len(columns)):
            try:
                build_wal_batch(columns.take([index]))
            except _UNFIT as exc:
                rejections.append(_reject(columns.row(index), _unfit_reason(exc)))
            else:
                fitting.append(index)
        batch = build_wal_batch(columns.take(fitting))
    return batch.sort_by(_PARTITION_ORDER) if batch.num_rows > 1 else batch


# What Arrow raises for a value it cannot hold: DecodeError names the known cases
# (schema.build_wal_batch); the others are the last line, so that one value the decoder let
# through by mistake costs its event (quarantined), never the flush thread and the service.
_UNFIT: Final = (DecodeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError)


def _unfit_reason(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"unstorable: {type(exc).__name__}: {exc}"


def _reject(event: MiniTicker, reason: str) -> Rejection:
    # The frame's text is gone by now: the event's fields stand in for it.
    raw = json.dumps(dataclasses.asdict(event), ensure_ascii=False)
    return Rejection(raw=raw, reason=reason, receive_time=event.receive_time)


def newest_event_ms(batch: pa.RecordBatch) -> int:
    """The newest ``E`` in a non-empty write-ahead batch, in milliseconds since the epoch."""
    newest: int = pc.max(batch.column("event_time").cast(pa.int64())).as_py()
    return newest


def partition_runs(batch: pa.RecordBatch) -> list[tuple[int, str, int, int]]:
    """The runs of consecutive rows of one partition in a write-ahead batch.

    Returns:
        ``(day, symbol, start, length)`` per run, in row order; ``day`` counts days since
        1970-01-01 (Arrow's ``date32``). A batch sorted by symbol and event time (as
        :func:`build_flush_batch` builds them) has one run per partition.
    """
    rows = batch.num_rows
    if not rows:
        return []
    # Python values per row of the key columns and a comparison per row: at a row or two per
    # partition that is cheaper than Arrow kernels, which cost some 10 µs each to call.
    symbols = batch.column(SYMBOL_COLUMN).to_pylist()
    days_column = batch.column(DATE_COLUMN).cast(pa.int32())
    bounds = pc.min_max(days_column)
    first_day: int = bounds["min"].as_py()
    if first_day == bounds["max"].as_py():
        # One day, as nearly every flush: the symbols alone cut the runs.
        starts = [row for row in range(1, rows) if symbols[row] != symbols[row - 1]]
        days = None
    else:
        days = days_column.to_pylist()
        starts = [
            row
            for row in range(1, rows)
            if symbols[row] != symbols[row - 1] or days[row] != days[row - 1]
        ]
    starts.insert(0, 0)
    ends = [*starts[1:], rows]
    return [
        (first_day if days is None else days[start], symbols[start], start, end - start)
        for start, end in zip(starts, ends, strict=True)
    ]


def partition_key(day: int, symbol: str) -> PartitionKey:
    """The partition of ``symbol`` on ``day`` (days since 1970-01-01)."""
    return PartitionKey(event_date(day * MS_PER_DAY), symbol)


def split_by_partition(batch: pa.RecordBatch) -> list[tuple[PartitionKey, pa.RecordBatch]]:
    """Cut a write-ahead batch into per-partition data slices, without copying.

    Consecutive rows of one partition form one slice (:func:`partition_runs`); a batch sorted
    by symbol and event time yields one slice per partition.
    """
    data = data_columns(batch)
    return [
        (partition_key(day, symbol), data.slice(start, length))
        for day, symbol, start, length in partition_runs(batch)
    ]
