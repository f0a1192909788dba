"""The rows logged but not yet sealed, by partition: one bookkeeping for writing and replay.

The live writer and recovery's replay keep the same account: every ``DATA`` record adds its
per-partition slices, every ``SEALED`` record drops the rows it covers. What is left is what
still has to be published, each partition with the log sequence number of its first record,
which names its file.
"""

import bisect
from array import array
from typing import Final

import pyarrow as pa

from recorder.storage.paths import PartitionKey
from recorder.storage.wal_batch import split_by_partition

COALESCE_EVERY: Final = 10
"""``DATA`` records between two coalescing sweeps (ten seconds of flushes at the default pace)."""
MAX_CHUNKS: Final = 8
"""Coalesced chunks a partition keeps before they are merged into one."""


class BufferedPartition:
    """A partition's rows logged since it was last sealed.

    Each ``DATA`` record adds a zero-copy slice of its flush batch. A slice costs far more than
    its rows (Arrow buffers and Python objects per column) and keeps the whole flush batch
    alive, so :meth:`coalesce` copies the slices into one contiguous chunk now and then, and
    merges the chunks into one when there are more than :data:`MAX_CHUNKS`: a buffered row
    then costs about its Arrow bytes, whatever the flush pace, and each row is copied a few
    times in its life, never once per flush. The log sequence
    number and row count of every record stay known, so a ``SEALED`` marker can still drop
    exactly the rows of the records it covers.

    Attributes:
        rows: rows buffered.
        nbytes: Arrow bytes accounted to them.
    """

    __slots__ = ("_chunks", "_lsns", "_row_ends", "_sizes", "_slices", "nbytes", "rows")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        # The coalesced chunks, then the slices added since, all in log order.
        self._chunks: list[pa.RecordBatch] = []
        self._slices: list[pa.RecordBatch] = []
        # One entry per record with rows here: its lsn, the cumulative row count through it,
        # and the Arrow bytes accounted to it.
        self._lsns = array("q")
        self._row_ends = array("q")
        self._sizes = array("q")
        self.rows = 0
        self.nbytes = 0

    @property
    def first_lsn(self) -> int:
        """The sequence number of the oldest record with rows here; it names the file."""
        return self._lsns[0]

    @property
    def last_lsn(self) -> int:
        """The sequence number of the newest record with rows here."""
        return self._lsns[-1]

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """The buffered rows, in log order."""
        return self._chunks + self._slices

    def add(self, lsn: int, piece: pa.RecordBatch, nbytes: int) -> None:
        """Add the slice of record ``lsn``, accounted as ``nbytes``."""
        self._slices.append(piece)
        self.rows += piece.num_rows
        self.nbytes += nbytes
        self._lsns.append(lsn)
        self._row_ends.append(self.rows)
        self._sizes.append(nbytes)

    def coalesce(self) -> None:
        """Copy the buffered rows into one batch, releasing the slices and their flush batches."""
        if self._slices:
            # concat_batches copies into fresh buffers, even a single slice.
            self._chunks.append(pa.concat_batches(self._slices))
            self._slices = []
        if len(self._chunks) > MAX_CHUNKS:
            self._chunks = [pa.concat_batches(self._chunks)]

    def discard_through(self, lsn: int) -> None:
        """Drop the rows of records up to ``lsn``: a ``SEALED`` record covers them."""
        dropped = bisect.bisect_right(self._lsns, lsn)
        if dropped == len(self._lsns):
            self._clear()
            return
        if dropped == 0:
            return
        cut = self._row_ends[dropped - 1]
        kept = pa.Table.from_batches(self.batches).slice(cut)
        self._chunks = [pa.concat_batches(kept.to_batches())]  # copies only what is kept
        self._slices = []
        self._lsns = self._lsns[dropped:]
        self._row_ends = array("q", (end - cut for end in self._row_ends[dropped:]))
        self._sizes = self._sizes[dropped:]
        self.rows = self._row_ends[-1]
        self.nbytes = sum(self._sizes)


class PartitionBuffers:
    """Buffered partitions by key, fed ``DATA`` batches and ``SEALED`` markers.

    Attributes:
        partitions: every partition with buffered rows.
    """

    def __init__(self) -> None:
        self.partitions: dict[PartitionKey, BufferedPartition] = {}
        self._batches_since_coalesce = 0

    def add_batch(self, lsn: int, batch: pa.RecordBatch) -> None:
        """Buffer the rows of the write-ahead batch logged as record ``lsn``.

        Every :data:`COALESCE_EVERY` batches, every partition's slices are copied into one
        batch (:meth:`BufferedPartition.coalesce`), so no flush batch stays pinned longer.
        """
        # A slice's own nbytes walks its buffers (about 17 µs each): share the batch's size
        # out by rows instead, once per batch. It only drives the size-based seal.
        per_row = batch.nbytes / max(batch.num_rows, 1)
        for key, piece in split_by_partition(batch):
            self.partitions.setdefault(key, BufferedPartition()).add(
                lsn, piece, round(per_row * piece.num_rows)
            )
        self._batches_since_coalesce += 1
        if self._batches_since_coalesce >= COALESCE_EVERY:
            self.coalesce()

    def coalesce(self) -> None:
        """Copy every partition's buffered rows into one batch each."""
        for partition in self.partitions.values():
            partition.coalesce()
        self._batches_since_coalesce = 0

    def apply_marker(self, key: PartitionKey, last_lsn: int) -> None:
        """Drop ``key``'s rows up to record ``last_lsn``, which a ``SEALED`` record covers."""
        partition = self.partitions.get(key)
        if partition is None:
            return
        partition.discard_through(last_lsn)
        if not partition.rows:
            del self.partitions[key]

    @property
    def rows(self) -> int:
        """Buffered rows of every partition."""
        return sum(partition.rows for partition in self.partitions.values())

    @property
    def nbytes(self) -> int:
        """Buffered Arrow bytes of every partition."""
        return sum(partition.nbytes for partition in self.partitions.values())
