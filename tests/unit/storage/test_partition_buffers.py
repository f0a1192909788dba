"""The buffered rows by partition: slices of logged batches, dropped by SEALED markers."""

import datetime as dt

from writer_support import DAY, DAY_MS, NEXT_DAY_MS, events_for, ticker

from recorder.storage.partition_buffers import PartitionBuffers
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import build_wal_batch
from recorder.storage.wal_batch import build_flush_batch, split_by_partition


def test_a_flush_batch_is_cut_into_one_slice_per_partition() -> None:
    events = [
        ticker("ETHUSDT", NEXT_DAY_MS),
        *events_for(DAY_MS, 2, symbols=("BTCUSDT", "ETHUSDT")),
    ]
    batch = build_flush_batch(list(reversed(events)), [])

    pieces = split_by_partition(batch)

    assert [(key, piece.num_rows) for key, piece in pieces] == [
        (PartitionKey(DAY, "BTCUSDT"), 2),
        (PartitionKey(DAY, "ETHUSDT"), 2),
        (PartitionKey(DAY + dt.timedelta(days=1), "ETHUSDT"), 1),
    ]


def test_a_sealed_marker_drops_the_rows_it_covers_and_keeps_later_ones() -> None:
    buffers = PartitionBuffers()
    key = PartitionKey(DAY, "BTCUSDT")
    for lsn in (1, 2, 4):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 10_000, 2, ("BTCUSDT",))))
    [partition] = buffers.partitions.values()
    assert (partition.first_lsn, partition.last_lsn, buffers.rows) == (1, 4, 6)

    buffers.apply_marker(key, last_lsn=2)

    assert (partition.first_lsn, partition.rows, len(partition.batches)) == (4, 2, 1)
    assert buffers.nbytes == partition.nbytes > 0
    buffers.apply_marker(key, last_lsn=4)
    assert buffers.partitions == {}
    assert buffers.rows == 0
