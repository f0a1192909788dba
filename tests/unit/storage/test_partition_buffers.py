"""The buffered rows by partition: slices of logged batches, dropped by SEALED markers."""

import datetime as dt

import pyarrow as pa
from writer_support import DAY, DAY_MS, NEXT_DAY_MS, events_for, ticker

from recorder.storage.partition_buffers import COALESCE_EVERY, PartitionBuffers
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


def test_coalescing_copies_the_rows_out_of_their_flush_batches() -> None:
    buffers = PartitionBuffers()
    symbols = tuple(f"S{i:03d}USDT" for i in range(50))
    for lsn in range(1, COALESCE_EVERY):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 2000, 1, symbols)))
    partition = buffers.partitions[PartitionKey(DAY, "S000USDT")]
    pinned = sum(piece.get_total_buffer_size() for piece in partition.batches)
    before = rows_of_batches(partition.batches)

    last = build_wal_batch(events_for(DAY_MS, 1, symbols))
    buffers.add_batch(COALESCE_EVERY, last)

    [batch] = partition.batches
    assert rows_of_batches([batch]) == [*before, *rows_of_batches([last.slice(0, 1)])]
    assert partition.rows == COALESCE_EVERY
    # One partition's rows, no longer the 50-symbol flush batches each slice pinned.
    assert batch.get_total_buffer_size() * 10 < pinned


def test_a_sealed_marker_drops_exactly_its_records_from_coalesced_rows() -> None:
    buffers = PartitionBuffers()
    key = PartitionKey(DAY, "BTCUSDT")
    for lsn in (1, 2, 4):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 10_000, 2, ("BTCUSDT",))))
    [partition] = buffers.partitions.values()
    kept = rows_of_batches(partition.batches)[4:]
    buffers.coalesce()
    assert len(partition.batches) == 1

    buffers.apply_marker(key, last_lsn=2)

    assert rows_of_batches(partition.batches) == kept
    assert (partition.first_lsn, partition.last_lsn, partition.rows) == (4, 4, 2)
    buffers.add_batch(5, build_wal_batch(events_for(DAY_MS + 50_000, 1, ("BTCUSDT",))))
    buffers.apply_marker(key, last_lsn=5)
    assert buffers.partitions == {}


def rows_of_batches(batches: list[pa.RecordBatch]) -> list[tuple[object, ...]]:
    table = pa.Table.from_batches(batches)
    return list(
        zip(*(table.column(name).to_pylist() for name in ("event_time", "close")), strict=True)
    )
