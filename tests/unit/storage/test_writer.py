"""The dataset writer: write-ahead logging, sealing on the policy's cues, closing, failures."""

import contextlib
import dataclasses
import os
import resource
from pathlib import Path

import pytest
from writer_support import (
    DAY,
    DAY_MS,
    GRACE_MS,
    MAX_AGE,
    NEXT_DAY_MS,
    SYMBOLS,
    WriterFactory,
    assert_layout,
    crash_copy,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
    segments,
    ticker,
)

from recorder.clock import ManualClock
from recorder.errors import StorageError, UnsafePathError
from recorder.storage.paths import partition_dir
from recorder.storage.sealing import SealReason


def test_written_events_are_published_once_sorted_on_close(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    root = tmp_path / "data"
    writer = make_writer(root)
    report = writer.open()
    assert report.files_published == ()
    events = events_for(DAY_MS, 20)
    writer.write_ahead(list(reversed(events[:30])))
    writer.write_ahead(events[30:])
    assert writer.buffered_rows == 60
    assert writer.wal_bytes > 0

    sealed = writer.close()

    assert {(f.symbol, f.rows, f.reason) for f in sealed} == {
        (symbol, 20, SealReason.CLOSE) for symbol in SYMBOLS
    }
    assert all(f.first_event_ms == DAY_MS and f.last_event_ms == DAY_MS + 19_000 for f in sealed)
    assert dataset_rows(root) == rows_of(events)
    assert len(data_files(root)) == 3
    assert not list((root / "_wal").iterdir())
    assert writer.buffered_rows == 0
    assert_layout(root)


def test_close_is_idempotent_and_a_closed_writer_refuses_work(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    assert writer.close() == []
    assert writer.close() == []
    with pytest.raises(StorageError, match="closed"):
        writer.write_ahead(events_for(DAY_MS, 1))
    with pytest.raises(StorageError, match="opened once"):
        writer.open()


def test_a_writer_must_be_opened_first(tmp_path: Path, make_writer: WriterFactory) -> None:
    with pytest.raises(StorageError, match="not open"):
        make_writer(tmp_path).write_ahead(events_for(DAY_MS, 1))


def test_partitions_of_a_day_are_sealed_when_event_time_passes_midnight_plus_grace(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    writer.write_ahead([ticker("BTCUSDT", NEXT_DAY_MS - 1), ticker("ETHUSDT", NEXT_DAY_MS - 2)])
    writer.write_ahead([ticker("BTCUSDT", NEXT_DAY_MS + GRACE_MS - 1)])
    assert writer.seal_due() == []

    writer.write_ahead([ticker("ETHUSDT", NEXT_DAY_MS + GRACE_MS)])
    sealed = writer.seal_due()

    assert {(f.date, f.symbol, f.reason) for f in sealed} == {
        (DAY, "BTCUSDT", SealReason.DAY_END),
        (DAY, "ETHUSDT", SealReason.DAY_END),
    }
    assert writer.buffered_rows == 2  # the next day's rows stay open
    # A late event of the closed day starts a new file for it, sealed on the next tick.
    writer.write_ahead([ticker("BTCUSDT", NEXT_DAY_MS - 500)])
    late = writer.seal_due()
    assert [(f.date, f.symbol, f.rows) for f in late] == [(DAY, "BTCUSDT", 1)]
    writer.close()
    btc_day_files = list((tmp_path / "date=2026-03-27" / "symbol=BTCUSDT").glob("*.parquet"))
    assert len(btc_day_files) == 2
    assert sum(dataset_rows(tmp_path).values()) == 5
    assert max(dataset_rows(tmp_path).values()) == 1


def test_segment_rotation_seals_everything_and_replaces_the_segment(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    first_segment = segments(tmp_path)
    events = events_for(DAY_MS, 4)
    writer.write_ahead(events[:6])
    clock.advance(MAX_AGE - 1)
    assert writer.seal_due() == []

    clock.advance(1)
    sealed = writer.seal_due()

    assert {f.reason for f in sealed} == {SealReason.AGE}
    assert sum(f.rows for f in sealed) == 6
    assert writer.buffered_rows == 0
    second_segment = segments(tmp_path)
    assert len(second_segment) == 1
    assert second_segment != first_segment
    writer.write_ahead(events[6:])
    clock.advance(MAX_AGE / 2)
    assert writer.seal_due() == []  # the age is counted from the rotation
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(events)


def test_a_partition_over_the_size_limit_is_sealed_early_alone(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path, max_file_bytes=3_000)
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 40, symbols=("BIG",)))
    writer.write_ahead(events_for(DAY_MS, 2, symbols=("SMALL",)))

    sealed = writer.seal_due()

    assert [(f.symbol, f.rows, f.reason) for f in sealed] == [("BIG", 40, SealReason.SIZE)]
    assert writer.buffered_rows == 2
    assert writer.open_partitions == 1


def test_unstorable_events_are_returned_and_the_others_written(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    root = tmp_path / "root"
    writer = make_writer(root)
    writer.open()
    good = events_for(DAY_MS, 2)
    hostile = ticker("../../escape", DAY_MS)
    unfit = ticker("BTCUSDT", DAY_MS + 500, close="1.0000000000000000001")
    # The decoder refuses these too; were one to slip through, storage is the last line: the
    # value costs its event, never the flush.
    lone_surrogate = dataclasses.replace(ticker("BTCUSDT", DAY_MS + 600), pair="\ud800")
    far_future = dataclasses.replace(ticker("ETHUSDT", DAY_MS + 700), receive_time=2**70)

    rejected = writer.write_ahead([hostile, *good, unfit, lone_surrogate, far_future])
    writer.close()

    assert [r.reason.split(": ")[0] for r in rejected] == [
        "unsafe_symbol",
        "decimal_unfit",
        "unstorable",
        "unstorable",
    ]
    assert [r.reason.split(": ")[1] for r in rejected[2:]] == [
        "UnicodeEncodeError",
        "OverflowError",
    ]
    assert "../../escape" in rejected[0].raw
    assert dataset_rows(root) == rows_of(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_a_failed_log_append_keeps_the_events_and_logs_them_first_next_time(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    durable = events_for(DAY_MS, 2)
    failed = events_for(DAY_MS + 2000, 2)
    later = events_for(DAY_MS + 4000, 2)
    writer.write_ahead(durable)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # The file-size limit makes the kernel refuse the append part-way, like a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (writer.wal_bytes + 10, hard))
    try:
        with pytest.raises(StorageError, match="6 rows held in memory"):
            writer.write_ahead(failed)
        with pytest.raises(StorageError):
            writer.seal_due()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert writer.pending_rows == 6
    assert writer.buffered_rows == 6
    crashed = crash_copy(writer.root, tmp_path / "crashed")

    writer.write_ahead(later)
    writer.close()

    assert dataset_rows(writer.root) == rows_of(durable + failed + later)
    make_writer(crashed, instance_id="other").open()
    assert dataset_rows(crashed) == rows_of(durable)


def test_a_segment_that_cannot_be_repaired_is_replaced(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    before = events_for(DAY_MS, 2)
    failed = events_for(DAY_MS + 2000, 2)
    writer.write_ahead(before)
    [segment_path] = segments(writer.root)
    # A read-only descriptor under the segment's descriptor number: the append and the
    # cut-back both fail, as on a device that turned read-only.
    read_only = os.open(segment_path, os.O_RDONLY)
    os.dup2(read_only, descriptor_of(segment_path))
    os.close(read_only)
    with pytest.raises(StorageError):
        writer.write_ahead(failed)

    writer.write_ahead([])

    assert writer.pending_rows == 0
    assert len(segments(writer.root)) == 2
    crashed = crash_copy(writer.root, tmp_path / "crashed")
    make_writer(crashed, instance_id="other").open()
    assert dataset_rows(crashed) == rows_of(before + failed)
    writer.close()
    assert dataset_rows(writer.root) == rows_of(before + failed)
    assert segments(writer.root) == []


def descriptor_of(path: Path) -> int:
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            if entry.readlink() == path:
                return int(entry.name)
    raise AssertionError(f"{path} is not open")


def test_an_unsafe_instance_id_is_refused(tmp_path: Path, make_writer: WriterFactory) -> None:
    with pytest.raises(UnsafePathError):
        make_writer(tmp_path, instance_id="../escape")


def test_a_partition_that_cannot_be_written_does_not_stop_the_others(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    events = events_for(DAY_MS, 3)
    writer.write_ahead(events)
    # The first partition in sort order has a file where its directory should be.
    blocked = partition_dir(tmp_path, DAY, min(SYMBOLS))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")

    with pytest.raises(StorageError, match="1 partition"):
        writer.close()
    published = {path.parent.name for path in data_files(tmp_path)}
    assert published == {f"symbol={symbol}" for symbol in SYMBOLS if symbol != min(SYMBOLS)}

    blocked.unlink()
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(events)
    assert segments(tmp_path) == []


def test_a_backlog_is_logged_in_chunks_as_space_comes_back(
    tmp_path: Path, make_writer: WriterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 1))
    one_record = writer.wal_bytes  # the header is smaller than a data record
    monkeypatch.setattr("recorder.storage.pending.MAX_APPEND_BYTES", 1)  # one record a chunk
    backlog = [events_for(DAY_MS + 1000 * (i + 1), 1) for i in range(6)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (writer.wal_bytes + 10, hard))
    try:
        for events in backlog:
            with pytest.raises(StorageError):
                writer.write_ahead(events)
        assert writer.pending_rows == 6 * len(SYMBOLS)
        # Room for about two records comes back: two chunks go out, the rest stays pending.
        resource.setrlimit(resource.RLIMIT_FSIZE, (writer.wal_bytes + 2 * one_record + 10, hard))
        with pytest.raises(StorageError):
            writer.write_ahead([])
        assert 0 < writer.pending_rows < 6 * len(SYMBOLS)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(
        events_for(DAY_MS, 1) + [e for events in backlog for e in events]
    )
