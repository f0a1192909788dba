"""The rows logged but not yet sealed, by partition: one bookkeeping for writing and replay.

The live writer and recovery's replay keep the same account: every ``DATA`` record adds its
per-partition slices, every ``SEALED`` record drops the rows it covers. What is left is what
still has to be published, each partition with the log sequence number of its first record,
which names its file.
"""

import pyarrow as pa

from recorder.storage.paths import PartitionKey
from recorder.storage.wal_batch import split_by_partition


class BufferedPartition:
    """A partition's rows logged since it was last sealed, as (lsn, slice) pieces.

    Attributes:
        pieces: the slices in log order, each with the sequence number of its ``DATA`` record.
        sizes: the Arrow bytes accounted to each piece.
        rows: rows in all pieces.
        nbytes: Arrow bytes of all pieces.
    """

    __slots__ = ("nbytes", "pieces", "rows", "sizes")

    def __init__(self) -> None:
        self.pieces: list[tuple[int, pa.RecordBatch]] = []
        self.sizes: list[int] = []
        self.rows = 0
        self.nbytes = 0

    @property
    def first_lsn(self) -> int:
        """The sequence number of the oldest record with rows here; it names the file."""
        return self.pieces[0][0]

    @property
    def last_lsn(self) -> int:
        """The sequence number of the newest record with rows here."""
        return self.pieces[-1][0]

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """The slices, in log order."""
        return [piece for _, piece in self.pieces]

    def add(self, lsn: int, piece: pa.RecordBatch, nbytes: int) -> None:
        """Add the slice of record ``lsn``, accounted as ``nbytes``."""
        self.pieces.append((lsn, piece))
        self.sizes.append(nbytes)
        self.rows += piece.num_rows
        self.nbytes += nbytes

    def discard_through(self, lsn: int) -> None:
        """Drop the pieces of records up to ``lsn``: a ``SEALED`` record covers them."""
        kept = [
            (entry, size)
            for entry, size in zip(self.pieces, self.sizes, strict=True)
            if entry[0] > lsn
        ]
        self.pieces = [entry for entry, _ in kept]
        self.sizes = [size for _, size in kept]
        self.rows = sum(piece.num_rows for _, piece in self.pieces)
        self.nbytes = sum(self.sizes)


class PartitionBuffers:
    """Buffered partitions by key, fed ``DATA`` batches and ``SEALED`` markers.

    Attributes:
        partitions: every partition with buffered rows.
    """

    def __init__(self) -> None:
        self.partitions: dict[PartitionKey, BufferedPartition] = {}

    def add_batch(self, lsn: int, batch: pa.RecordBatch) -> None:
        """Buffer the rows of the write-ahead batch logged as record ``lsn``."""
        # A slice's own nbytes walks its buffers (about 17 µs each): share the batch's size
        # out by rows instead, once per batch. It only drives the size-based seal.
        per_row = batch.nbytes / max(batch.num_rows, 1)
        for key, piece in split_by_partition(batch):
            self.partitions.setdefault(key, BufferedPartition()).add(
                lsn, piece, round(per_row * piece.num_rows)
            )

    def apply_marker(self, key: PartitionKey, last_lsn: int) -> None:
        """Drop ``key``'s rows up to record ``last_lsn``, which a ``SEALED`` record covers."""
        partition = self.partitions.get(key)
        if partition is None:
            return
        partition.discard_through(last_lsn)
        if not partition.pieces:
            del self.partitions[key]

    @property
    def rows(self) -> int:
        """Buffered rows of every partition."""
        return sum(partition.rows for partition in self.partitions.values())

    @property
    def nbytes(self) -> int:
        """Buffered Arrow bytes of every partition."""
        return sum(partition.nbytes for partition in self.partitions.values())
