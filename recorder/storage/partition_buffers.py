"""The rows logged but not yet sealed, by partition: one bookkeeping for writing and replay.

The live writer and recovery's replay keep the same account: every ``DATA`` record adds its
per-partition rows, every ``SEALED`` record drops the rows it covers. What is left is what
still has to be published, each partition with the log sequence number of its first record,
which names its file.

Where a buffered row lives, from its flush to its seal. A buffered row should cost about its
Arrow bytes (a slice costs some 2.5 KB of Arrow objects, whatever its rows), and a flush should
make no Arrow object per partition (at the real pace each of its partitions has one row):

1. **Its flush batch.** A ``DATA`` record notes, per partition, where its rows are in the
   batch: a span, a plain tuple.
2. **A window.** Every :data:`COALESCE_EVERY` records, one ``take`` copies the rows of every
   partition out of those flush batches into one batch ordered by partition, and each
   partition's spans become one span of it. The flush batches are released.
3. **An epoch.** Every :data:`WINDOWS_PER_EPOCH` windows, one more ``take`` merges them the
   same way, and the windows are released.
4. **Chunks of its own.** Once every :data:`EPOCHS_KEPT` epochs, a partition copies its rows
   in epochs into one batch of its own, whether it got rows in every epoch or not, and an
   epoch is released once every partition has. Its chunks are merged when they reach the
   same size (a binary counter), so it keeps a handful of them and each row is copied a few
   times in its life. Partitions take turns, a share of them at each epoch: all at once,
   the merges that copy a partition's every row would copy every buffered row in one flush,
   and the allocator would find none of the freed memory the right size for the new chunks.

So a shared batch outlives the partitions it holds rows of, when they are sealed in the
meantime, by a few minutes at most. A partition read for sealing
(:attr:`BufferedPartition.batches`) copies its rows out, so that a seal job keeps no shared
batch alive, however long it is retried.

5. **A spill file**, only while the publisher falls behind: the writer moves the rows of the
   largest partitions out of memory into files of :mod:`recorder.storage.spill`
   (:meth:`BufferedPartition.spill`). The partition keeps its account (records, rows, bytes)
   and the names of its spill files, which its seal job reads back.
"""

import bisect
from array import array
from typing import Final

import pyarrow as pa

from recorder.storage.paths import PartitionKey
from recorder.storage.schema import data_columns
from recorder.storage.wal_batch import partition_key, partition_runs

COALESCE_EVERY: Final = 10
"""``DATA`` records between two sweeps into a window (ten seconds at the default pace)."""
WINDOWS_PER_EPOCH: Final = 8
"""Windows merged into one epoch (80 seconds)."""
EPOCHS_KEPT: Final = 4
"""Epochs (320 seconds) between two copies of a partition's rows in epochs into its own chunk."""
_MAX_CACHED_KEYS: Final = 65_536
"""Partition keys remembered (a recorder sees a few hundred symbols on a day or two)."""

_Span = tuple[pa.RecordBatch, int, int]
"""A partition's rows in a shared batch: the batch, the first row and the row count there.
A tuple, not a slice: a slice costs some 2.5 KB of Arrow objects whatever its rows."""


class BufferedPartition:
    """A partition's rows logged since it was last sealed.

    The rows are held in four stages (see the module's docstring): chunks of its own, then
    spans of epochs, of windows and of flush batches, all in log order. The log sequence
    number and row count of every record stay known, so a ``SEALED`` marker can still drop
    exactly the rows of the records it covers.

    Args:
        phase: the epochs at which it copies its rows out of epochs are those whose number
            plus ``phase`` is a multiple of :data:`EPOCHS_KEPT`.

    Attributes:
        rows: rows buffered.
        nbytes: Arrow bytes accounted to them, spilled ones included.
        spilled_nbytes: Arrow bytes accounted to the rows moved to spill files.
    """

    __slots__ = (
        "_chunks",
        "_in_epochs",
        "_in_flushes",
        "_in_windows",
        "_lsns",
        "_phase",
        "_row_ends",
        "_sizes",
        "_spill_files",
        "nbytes",
        "rows",
        "spilled_nbytes",
    )

    def __init__(self, phase: int = 0) -> None:
        self._phase = phase % EPOCHS_KEPT
        self._clear()

    def _clear(self) -> None:
        self._chunks: list[pa.RecordBatch] = []
        self._in_epochs: list[_Span] = []
        self._in_windows: list[_Span] = []
        self._in_flushes: list[_Span] = []
        # One entry per record with rows here: its lsn, the cumulative row count through it,
        # and the Arrow bytes accounted to it.
        self._lsns = array("q")
        self._row_ends = array("q")
        self._sizes = array("q")
        self._spill_files: list[str] = []
        self.rows = 0
        self.nbytes = 0
        self.spilled_nbytes = 0

    @property
    def first_lsn(self) -> int:
        """The sequence number of the oldest record with rows here; it names the file."""
        return self._lsns[0]

    @property
    def last_lsn(self) -> int:
        """The sequence number of the newest record with rows here."""
        return self._lsns[-1]

    @property
    def held_nbytes(self) -> int:
        """Arrow bytes accounted to the rows held in memory (not spilled)."""
        return self.nbytes - self.spilled_nbytes

    @property
    def spill_files(self) -> tuple[str, ...]:
        """The spill files holding this partition's oldest rows, oldest first."""
        return tuple(self._spill_files)

    def spill(self, path: str) -> None:
        """Release the rows held in memory: :attr:`batches` was just written to ``path``."""
        self._chunks = []
        self._drop_spans()
        self._spill_files.append(path)
        self.spilled_nbytes = self.nbytes

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """The rows held in memory, in log order, in batches that hold this partition's rows only.

        Rows moved to spill files (:attr:`spill_files`) are older than these and not included.

        Rows still in shared batches are copied out first (once: a partition is read when
        it is sealed), so that whoever keeps them, such as a seal job retried while its disk
        stays full, keeps no other partition's rows alive.
        """
        if self._in_epochs or self._in_windows or self._in_flushes:
            # concat_batches copies into fresh buffers.
            self._chunks = [*self._chunks, pa.concat_batches(self._shared_slices())]
            self._drop_spans()
        return list(self._chunks)

    def _shared_slices(self) -> list[pa.RecordBatch]:
        spans = self._in_epochs + self._in_windows + self._in_flushes
        return [batch.slice(start, length) for batch, start, length in spans]

    def _drop_spans(self) -> None:
        self._in_epochs = []
        self._in_windows = []
        self._in_flushes = []

    def _in_epoch(self, span: _Span) -> None:
        """Replace the window spans just merged by ``span``, their rows in an epoch."""
        self._in_windows = []
        self._in_epochs.append(span)

    def _own_epoch_rows(self) -> None:
        """Copy the rows in epochs into a chunk of its own."""
        chunks = self._chunks
        spans = self._in_epochs
        # concat_batches copies, releasing this partition's share of the epochs.
        chunks.append(pa.concat_batches([b.slice(start, length) for b, start, length in spans]))
        self._in_epochs = []
        # A binary counter: merged once they are the same size, so a partition keeps a
        # handful of chunks and a row is copied a few times in its life, not once per sweep.
        while len(chunks) > 1 and chunks[-2].num_rows <= chunks[-1].num_rows:
            chunks[-2:] = [pa.concat_batches(chunks[-2:])]

    def coalesce(self) -> None:
        """Copy the buffered rows into one batch of its own, releasing every shared batch."""
        pieces = self._chunks + self._shared_slices()
        if len(pieces) > len(self._chunks) or len(pieces) > 1:
            self._chunks = [pa.concat_batches(pieces)]
            self._drop_spans()

    def discard_through(self, lsn: int) -> None:
        """Drop the rows of records up to ``lsn``: a ``SEALED`` record covers them.

        Only replay applies markers, and it never spills; a spilled partition refuses.
        """
        if self._spill_files:
            raise ValueError("a spilled partition cannot drop its oldest rows")
        dropped = bisect.bisect_right(self._lsns, lsn)
        if dropped == len(self._lsns):
            self._clear()
            return
        if dropped == 0:
            return
        cut = self._row_ends[dropped - 1]
        kept = pa.Table.from_batches(self._chunks + self._shared_slices()).slice(cut)
        self._chunks = [pa.concat_batches(kept.to_batches())]  # copies only what is kept
        self._drop_spans()
        self._lsns = self._lsns[dropped:]
        self._row_ends = array("q", (end - cut for end in self._row_ends[dropped:]))
        self._sizes = self._sizes[dropped:]
        self.rows = self._row_ends[-1]
        self.nbytes = sum(self._sizes)


def _gather(
    holders: list[tuple[BufferedPartition, list[_Span]]],
) -> list[tuple[BufferedPartition, _Span]]:
    """Copy the rows of the ``holders``' spans into one new batch, ordered by partition.

    Args:
        holders: partitions, each with its spans to merge (a tail of its rows, in log order).

    Returns:
        Each partition with its span of the new batch, which replaces the spans given.
    """
    # The batches to read are found from the spans themselves: a batch no partition refers
    # to any more (all its partitions sealed) is not kept alive for the merge.
    offsets: dict[int, int] = {}
    sources: list[pa.RecordBatch] = []
    rows = 0
    positions: list[int] = []
    moved: list[tuple[BufferedPartition, int, int]] = []
    for partition, spans in holders:
        first = len(positions)
        for batch, start, length in spans:
            offset = offsets.get(id(batch))  # the span holds the batch: its id is not reused
            if offset is None:
                offset = offsets[id(batch)] = rows
                sources.append(batch)
                rows += batch.num_rows
            if length == 1:
                positions.append(offset + start)
            else:
                positions.extend(range(offset + start, offset + start + length))
        moved.append((partition, first, len(positions) - first))
    if not positions:
        return []
    taken = pa.Table.from_batches(sources).take(pa.array(positions, pa.int64()))
    [merged] = taken.combine_chunks().to_batches()
    return [(partition, (merged, first, length)) for partition, first, length in moved]


class PartitionBuffers:
    """Buffered partitions by key, fed ``DATA`` batches and ``SEALED`` markers.

    Attributes:
        partitions: every partition with buffered rows. A partition taken out of it (as the
            writer does when it seals one) keeps its rows where they are and is left out of
            later merges.
    """

    def __init__(self) -> None:
        self.partitions: dict[PartitionKey, BufferedPartition] = {}
        self._keys: dict[tuple[int, str], PartitionKey] = {}
        self._batches_since_coalesce = 0
        self._windows_since_epoch = 0
        self._epochs = 0
        self._created = 0

    def add_batch(self, lsn: int, batch: pa.RecordBatch) -> None:
        """Buffer the rows of the write-ahead batch logged as record ``lsn``.

        Every :data:`COALESCE_EVERY` batches, the rows of every partition are copied out of
        the flush batches (:meth:`coalesce`), so no flush batch stays pinned longer.
        """
        rows = batch.num_rows
        if rows:
            # Measuring each partition's rows would walk their buffers (about 17 µs a slice):
            # share the batch's size out by rows instead, once per batch. It only drives the
            # size-based seal and the budget.
            per_row = batch.nbytes / rows
            one_row = round(per_row)
            data = data_columns(batch)
            partitions = self.partitions
            keys = self._keys
            for day, symbol, start, length in partition_runs(batch):
                key = keys.get((day, symbol))
                if key is None:
                    key = self._new_key(day, symbol)
                partition = partitions.get(key)
                if partition is None:
                    partition = partitions[key] = BufferedPartition(self._created)
                    self._created += 1
                # What BufferedPartition would do in a method, inlined: this runs for every
                # partition of every flush.
                nbytes = one_row if length == 1 else round(per_row * length)
                partition._in_flushes.append((data, start, length))
                partition.rows += length
                partition.nbytes += nbytes
                partition._lsns.append(lsn)
                partition._row_ends.append(partition.rows)
                partition._sizes.append(nbytes)
        self._batches_since_coalesce += 1
        if self._batches_since_coalesce >= COALESCE_EVERY:
            self.coalesce()

    def _new_key(self, day: int, symbol: str) -> PartitionKey:
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        key = self._keys[day, symbol] = partition_key(day, symbol)
        return key

    def coalesce(self) -> None:
        """Copy every partition's rows logged since the last sweep out of their flush batches.

        One ``take`` for all partitions builds a window ordered by partition, which each
        partition then refers to; every :data:`WINDOWS_PER_EPOCH` windows, one more ``take``
        merges them into an epoch the same way.
        """
        self._batches_since_coalesce = 0
        holders = [(p, p._in_flushes) for p in self.partitions.values() if p._in_flushes]
        spans = _gather(holders)
        for partition, span in spans:
            partition._in_flushes = []
            partition._in_windows.append(span)
        if not spans:
            return
        self._windows_since_epoch += 1
        if self._windows_since_epoch >= WINDOWS_PER_EPOCH:
            self._merge_windows()

    def _merge_windows(self) -> None:
        self._windows_since_epoch = 0
        self._epochs += 1
        holders = [(p, p._in_windows) for p in self.partitions.values() if p._in_windows]
        for partition, span in _gather(holders):
            partition._in_epoch(span)
        # By turn, not by count: a partition with rare rows must not keep an old epoch, and
        # the rows of every partition sealed since, alive until the rotation.
        for partition in self.partitions.values():
            if partition._in_epochs and (self._epochs + partition._phase) % EPOCHS_KEPT == 0:
                partition._own_epoch_rows()

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

    @property
    def held_nbytes(self) -> int:
        """Buffered Arrow bytes of every partition held in memory (not spilled)."""
        return sum(partition.held_nbytes for partition in self.partitions.values())
