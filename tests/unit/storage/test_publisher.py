"""Publishing sealed files: atomic, only sealed files end in .parquet, failures kept buffered."""

import datetime as dt
from pathlib import Path

import pytest
from writer_support import (
    DAY,
    DAY_MS,
    MAX_AGE,
    NEXT_DAY_MS,
    WriterFactory,
    assert_layout,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
)

from recorder.clock import ManualClock
from recorder.errors import StorageError
from recorder.storage.paths import (
    PartitionKey,
    data_file_name,
    new_session_token,
    partition_dir,
    temp_file_name,
)
from recorder.storage.publisher import publish_partition
from recorder.storage.schema import build_wal_batch, data_columns
from recorder.storage.sealing import SealReason


def test_a_publish_failure_keeps_the_rows_and_a_retry_succeeds(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    today = events_for(DAY_MS, 3, symbols=("BTCUSDT",))
    tomorrow = events_for(NEXT_DAY_MS, 3, symbols=("BTCUSDT",))
    writer.write_ahead(today + tomorrow)
    blocker = tmp_path / "date=2026-03-28"
    blocker.write_text("not a directory")

    with pytest.raises(StorageError, match="could not be published"):
        writer.close()

    assert writer.buffered_rows == 3  # the next day's rows; today's file was published
    assert len(data_files(tmp_path)) == 1
    assert not list(tmp_path.rglob("*.tmp"))
    blocker.unlink()
    sealed = writer.close()
    # The file published before the failure is reported too.
    assert sorted((f.date, f.rows) for f in sealed) == [(DAY, 3), (DAY + dt.timedelta(1), 3)]
    assert dataset_rows(tmp_path) == rows_of(today + tomorrow)


def test_nothing_but_sealed_data_files_ends_in_parquet(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    writer = make_writer(tmp_path, max_file_bytes=2_000)
    writer.open()
    for start in range(20):
        writer.write_ahead(events_for(DAY_MS + start * 1000, 1))
        writer.seal_due()
        assert_layout(tmp_path)
        clock.advance(MAX_AGE / 7)
    writer.close()
    assert_layout(tmp_path)
    assert data_files(tmp_path)


def test_publishing_under_a_taken_name_keeps_the_file_and_removes_the_temp_file(
    tmp_path: Path,
) -> None:
    key = PartitionKey(DAY, "BTCUSDT")
    rows = [data_columns(build_wal_batch(events_for(DAY_MS, 3, symbols=("BTCUSDT",))))]
    name = data_file_name(new_session_token("alpha", 1_774_569_600_000_000), 1)

    sealed = publish_partition(tmp_path, key, list(reversed(rows)), name, SealReason.CLOSE)

    assert sealed is not None
    assert (sealed.rows, sealed.first_event_ms, sealed.last_event_ms) == (3, DAY_MS, DAY_MS + 2000)
    assert sealed.path == partition_dir(tmp_path, DAY, "BTCUSDT") / name
    before = sealed.path.read_bytes()
    temp = sealed.path.with_name(temp_file_name(name))
    temp.write_bytes(b"left by a crash")
    assert publish_partition(tmp_path, key, rows, name, SealReason.RECOVERY) is None
    assert sealed.path.read_bytes() == before
    assert not temp.exists()
