"""Write-ahead records built but not yet durably appended: the writer's pending rows.

A record whose append failed is kept, with its log sequence number, and re-sent first on the
next call; a record may also be *held* (not to be logged yet: the gap records its rows close
are not durable). A backlog goes out in chunks of at most :data:`MAX_APPEND_BYTES`, so that it
can be logged as space comes back, and when a storage outage outlasts the memory budget the
oldest rows are given up (:meth:`PendingRecords.drop_oldest`).
"""

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from recorder.storage.held_rows import SymbolRows, first_rows_after, rows_by_symbol, split_protected
from recorder.storage.wal import RecordType, WalRecord, encode_batch

MAX_APPEND_BYTES = 4 * 1024 * 1024
"""The most one write-ahead append carries when a backlog is logged (always one record at least)."""


@dataclass(slots=True)
class PendingRecord:
    """A record built but not yet durably appended, kept to be re-sent with the same lsn.

    Attributes:
        record: the record.
        batch: its rows (``None`` for a record without rows, such as ``SEALED``).
        held: not to be logged yet.
    """

    record: WalRecord
    batch: pa.RecordBatch | None = None
    held: bool = False


class PendingRecords:
    """The pending records, oldest first; sans-IO."""

    def __init__(self) -> None:
        self._records: list[PendingRecord] = []

    def __bool__(self) -> bool:
        return bool(self._records)

    def append(self, record: WalRecord, batch: pa.RecordBatch | None = None) -> None:
        """Queue ``record`` (with its rows, if any) after the others, not held."""
        self._records.append(PendingRecord(record, batch))

    def hold(self, *, held: bool) -> None:
        """Hold every pending record with rows out of the log, or release them all."""
        for item in self._records:
            item.held = held and item.batch is not None

    def next_chunk(self) -> list[PendingRecord]:
        """The oldest records not held whose payloads fit in :data:`MAX_APPEND_BYTES`.

        At least one, unless the oldest is held (or none is pending): then nothing.
        """
        size = 0
        for count, item in enumerate(self._records):
            size += len(item.record.payload)
            if item.held or (size > MAX_APPEND_BYTES and count):
                return self._records[:count]
        return self._records[:]

    def remove_first(self, count: int) -> None:
        """Forget the ``count`` oldest records: they are durable now."""
        del self._records[:count]

    def _batches(self) -> list[pa.RecordBatch]:
        return [item.batch for item in self._records if item.batch is not None]

    @property
    def rows(self) -> int:
        """Rows of every pending record."""
        return sum(batch.num_rows for batch in self._batches())

    @property
    def nbytes(self) -> int:
        """Arrow bytes of :attr:`rows`."""
        return sum(batch.nbytes for batch in self._batches())

    def first_after(self, after: Mapping[str, int]) -> dict[str, int]:
        """For each symbol of ``after``, the oldest pending ``E`` newer than its value there."""
        return first_rows_after(self._batches(), after)

    def drop_oldest(
        self, keep_bytes: int, protect: Mapping[str, frozenset[int]]
    ) -> dict[str, SymbolRows]:
        """Give up the oldest rows, a record at a time, until ``keep_bytes`` are left.

        Records without rows stay; a record keeps its ``protect`` rows (per symbol, their
        ``E``), re-encoded under its own sequence number.

        Returns:
            The rows dropped, per symbol.
        """
        excess = self.nbytes - keep_bytes
        dropped: list[pa.RecordBatch] = []
        kept: list[PendingRecord] = []
        for item in self._records:
            if excess <= 0 or item.batch is None:
                kept.append(item)
                continue
            spared, given_up = split_protected(item.batch, protect)
            excess -= item.batch.nbytes - spared.nbytes
            dropped.append(given_up)
            if spared.num_rows:
                record = WalRecord(RecordType.DATA, item.record.lsn, encode_batch(spared))
                kept.append(PendingRecord(record, spared, held=item.held))
        self._records = kept
        return rows_by_symbol(dropped)
