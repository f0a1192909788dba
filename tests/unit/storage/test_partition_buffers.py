"""The buffered rows by partition: slices of logged batches, dropped by SEALED markers."""

import datetime as dt

import pyarrow as pa
from writer_support import DAY, DAY_MS, NEXT_DAY_MS, events_for, ticker

from recorder.clock import MS_PER_DAY
from recorder.storage.partition_buffers import (
    COALESCE_EVERY,
    EPOCHS_KEPT,
    WINDOWS_PER_EPOCH,
    PartitionBuffers,
)
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import build_wal_batch
from recorder.storage.wal_batch import build_flush_batch, partition_runs, split_by_partition


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


def test_rows_out_of_partition_order_are_cut_at_every_change_of_partition() -> None:
    batch = build_wal_batch(
        [
            ticker("BTCUSDT", DAY_MS),
            ticker("ETHUSDT", DAY_MS),
            ticker("ETHUSDT", NEXT_DAY_MS),
            ticker("ETHUSDT", NEXT_DAY_MS + 1),
            ticker("BTCUSDT", DAY_MS + 1),
        ]
    )

    assert partition_runs(batch) == [
        (DAY_MS // MS_PER_DAY, "BTCUSDT", 0, 1),
        (DAY_MS // MS_PER_DAY, "ETHUSDT", 1, 1),
        (NEXT_DAY_MS // MS_PER_DAY, "ETHUSDT", 2, 2),
        (DAY_MS // MS_PER_DAY, "BTCUSDT", 4, 1),
    ]
    assert partition_runs(batch.slice(0, 0)) == []


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


def test_a_sweep_releases_the_flush_batches_of_partitions_already_gone() -> None:
    buffers = PartitionBuffers()
    gone = PartitionKey(DAY, "BIGUSDT")
    baseline = pa.total_allocated_bytes()
    buffers.add_batch(1, build_flush_batch(events_for(DAY_MS, 2000, ("BIGUSDT", "ETHUSDT")), []))
    taken_out = [piece.get_total_buffer_size() for piece in buffers.partitions.pop(gone).batches]
    for lsn in range(2, COALESCE_EVERY + 1):
        buffers.add_batch(lsn, build_flush_batch(events_for(DAY_MS + lsn, 1, ("ETHUSDT",)), []))

    held = pa.total_allocated_bytes() - baseline
    # ETHUSDT's 2,009 rows are now in a window of their own; the 4,000-row flush batch, whose
    # BIGUSDT half was sealed, is no longer pinned by them.
    assert held < sum(taken_out) * 1.5
    assert buffers.rows == 2000 + COALESCE_EVERY - 1


def test_rows_keep_their_log_order_through_every_stage() -> None:
    buffers = PartitionBuffers()
    symbols = ("AUSDT", "BUSDT", "CUSDT")
    records = COALESCE_EVERY * WINDOWS_PER_EPOCH * (EPOCHS_KEPT + 3)
    logged: dict[PartitionKey, list[tuple[object, ...]]] = {}
    for lsn in range(1, records + 1):
        # Two rows of each partition per record, and a day change half way.
        start = DAY_MS + lsn * 10_000 + (MS_PER_DAY if lsn > records // 2 else 0)
        batch = build_flush_batch(events_for(start, 2, symbols), [])
        for key, piece in split_by_partition(batch):
            logged.setdefault(key, []).extend(rows_of_batches([piece]))
        buffers.add_batch(lsn, batch)

    assert len(buffers.partitions) == 6
    for key, partition in buffers.partitions.items():
        assert rows_of_batches(partition.batches) == logged[key]
        assert partition.rows == len(logged[key])
    assert buffers.rows == records * 2 * len(symbols)


def test_a_partition_read_out_holds_only_its_own_rows() -> None:
    buffers = PartitionBuffers()
    symbols = tuple(f"S{i:03d}USDT" for i in range(50))
    baseline = pa.total_allocated_bytes()
    for lsn in range(1, COALESCE_EVERY * WINDOWS_PER_EPOCH + 1):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 2000, 1, symbols)))
    shared = pa.total_allocated_bytes() - baseline
    partition = buffers.partitions.pop(PartitionKey(DAY, "S000USDT"))
    batches = partition.batches

    # As a seal job keeps it: the epoch it shared with 49 other partitions is gone with them.
    buffers.partitions.clear()
    own = sum(batch.get_total_buffer_size() for batch in batches)
    assert pa.total_allocated_bytes() - baseline < own * 2 < shared / 10
    assert partition.rows == sum(batch.num_rows for batch in batches) == 80


def test_a_partition_with_rare_rows_keeps_no_epoch_alive_for_long() -> None:
    buffers = PartitionBuffers()
    symbols = tuple(f"S{i:03d}USDT" for i in range(50))
    quiet = PartitionKey(DAY, "QUIETUSDT")
    baseline = pa.total_allocated_bytes()
    buffers.add_batch(1, build_wal_batch(events_for(DAY_MS, 1, ("QUIETUSDT", *symbols))))
    for lsn in range(2, COALESCE_EVERY * WINDOWS_PER_EPOCH * (EPOCHS_KEPT + 1) + 1):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 2000, 1, symbols)))
    buffered = pa.total_allocated_bytes() - baseline
    for key in [key for key in buffers.partitions if key != quiet]:
        del buffers.partitions[key]  # sealed, as the writer drops them

    # The first epoch held the quiet row among 50 partitions' rows: it has been released.
    assert pa.total_allocated_bytes() - baseline < buffered / 100
    assert buffers.rows == 1


def test_a_partition_put_back_after_missing_a_sweep_keeps_its_rows() -> None:
    buffers = PartitionBuffers()
    key = PartitionKey(DAY, "BTCUSDT")
    buffers.add_batch(1, build_wal_batch(events_for(DAY_MS, 2, ("BTCUSDT",))))
    partition = buffers.partitions.pop(key)
    for lsn in range(2, COALESCE_EVERY + 2):
        buffers.add_batch(lsn, build_wal_batch(events_for(DAY_MS + lsn * 10_000, 1, ("ETHUSDT",))))
    buffers.partitions[key] = partition
    buffers.add_batch(20, build_wal_batch(events_for(DAY_MS + 500_000, 1, ("BTCUSDT",))))
    buffers.coalesce()

    closes = [close for _, close in rows_of_batches(partition.batches)]
    assert [str(close) for close in closes] == ["0E-18", "1.000000010000000000", "0E-18"]
    assert (partition.first_lsn, partition.last_lsn, partition.rows) == (1, 20, 3)


def test_bytes_are_the_flush_batch_shared_out_by_rows() -> None:
    buffers = PartitionBuffers()
    one = build_flush_batch(events_for(DAY_MS, 3, ("AUSDT", "BUSDT")), [])
    two = build_flush_batch(events_for(DAY_MS + 10_000, 1, ("AUSDT",)), [])
    buffers.add_batch(1, one)
    buffers.add_batch(2, two)

    partition = buffers.partitions[PartitionKey(DAY, "AUSDT")]
    assert partition.nbytes == round(one.nbytes / 6 * 3) + round(two.nbytes)
    buffers.apply_marker(PartitionKey(DAY, "AUSDT"), last_lsn=1)
    assert partition.nbytes == round(two.nbytes)


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
