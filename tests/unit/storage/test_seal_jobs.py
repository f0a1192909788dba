"""Publication beside the flush: jobs in flight, retries in order, held and dropped rows."""

import resource
import threading
from pathlib import Path

import pytest
from writer_support import (
    DAY,
    DAY_MS,
    MAX_AGE,
    SYMBOLS,
    WriterFactory,
    block_partition,
    crash_copy,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
    segments,
)

from recorder.clock import ManualClock
from recorder.errors import StorageError
from recorder.model import MiniTicker
from recorder.storage.paths import partition_dir
from recorder.storage.seal_jobs import RETRY_FIRST, RETRY_MAX, SealJob, SealResult
from recorder.storage.sealing import SealReason
from recorder.storage.writer import DatasetWriter


def rotated(
    root: Path, make_writer: WriterFactory, clock: ManualClock, events: list[MiniTicker]
) -> tuple[DatasetWriter, list[SealJob]]:
    """A writer that logged ``events`` and then rotated: every partition handed over."""
    writer = make_writer(root)
    writer.open()
    writer.write_ahead(events)
    clock.advance(MAX_AGE)
    return writer, writer.take_seal_jobs()


def test_the_log_keeps_going_while_a_rotation_is_published_in_another_thread(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    first = events_for(DAY_MS, 5)
    writer, jobs = rotated(tmp_path, make_writer, clock, first)
    results: list[SealResult] = []
    publisher = threading.Thread(target=lambda: results.extend(map(writer.publish, jobs)))
    publisher.start()
    later = [events_for(DAY_MS + 10_000 + 1000 * i, 1) for i in range(20)]
    for events in later:
        writer.write_ahead(events)  # the same partitions get fresh buffers meanwhile
        assert writer.take_seal_jobs() == []  # and wait for their job in flight
    publisher.join()

    assert len(writer.finish_seals(results)) == len(SYMBOLS)
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(first + [e for events in later for e in events])
    assert len(data_files(tmp_path)) == 2 * len(SYMBOLS)


def test_a_failed_job_is_retried_as_it_was_before_the_newer_rows_of_its_partition(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    old = events_for(DAY_MS, 3)
    writer.write_ahead(old)
    blocked = partition_dir(tmp_path, DAY, min(SYMBOLS))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")
    clock.advance(MAX_AGE)

    with pytest.raises(StorageError, match="1 partition"):
        writer.seal_due()
    new = events_for(DAY_MS + 3000, 3)
    writer.write_ahead(new)
    crashed = crash_copy(tmp_path, tmp_path.with_name(tmp_path.name + "-crashed"))
    blocked.unlink()
    assert writer.take_seal_jobs() == []  # backing off
    clock.advance(RETRY_FIRST)
    [retry] = writer.take_seal_jobs()

    assert retry.key.symbol == min(SYMBOLS)
    assert retry.rows == 3  # only the rows of the failed attempt: same name, same content
    writer.finish_seals([writer.publish(retry)])
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(old + new)
    (crashed / blocked.relative_to(tmp_path)).unlink()
    make_writer(crashed, instance_id="other").open()
    assert dataset_rows(crashed) == rows_of(old + new)


def test_held_rows_stay_out_of_the_log_until_released(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    logged = events_for(DAY_MS, 1)
    held = events_for(DAY_MS + 1000, 1)
    writer.write_ahead(logged)
    assert sum(rows.rows for rows in writer.take_durable().values()) == len(logged)

    writer.write_ahead(held, hold=True)
    writer.write_ahead([], hold=True)
    assert writer.pending_rows == len(held)
    assert writer.take_durable() == {}
    crashed = crash_copy(tmp_path, tmp_path.with_name(tmp_path.name + "-crashed"))
    writer.write_ahead([])

    durable = writer.take_durable()
    assert {symbol: rows.rows for symbol, rows in durable.items()} == dict.fromkeys(SYMBOLS, 1)
    assert {rows.first_ms for rows in durable.values()} == {DAY_MS + 1000}
    writer.close()
    assert dataset_rows(tmp_path) == rows_of(logged + held)
    make_writer(crashed, instance_id="other").open()
    assert dataset_rows(crashed) == rows_of(logged)


def test_closing_with_held_rows_fails_rather_than_log_them(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 1), hold=True)
    with pytest.raises(StorageError, match="could not be logged"):
        writer.close()
    assert data_files(tmp_path) == []


def test_the_oldest_pending_rows_are_dropped_and_reported_by_symbol(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 1))
    backlog = [events_for(DAY_MS + 1000 * (i + 1), 1) for i in range(6)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (writer.wal_bytes + 10, hard))
    try:
        for events in backlog:
            with pytest.raises(StorageError):
                writer.write_ahead(events)
        per_flush = writer.pending_bytes // len(backlog)
        dropped = writer.drop_oldest_pending(keep_bytes=2 * per_flush)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    assert set(dropped) == set(SYMBOLS)
    assert {(r.rows, r.first_ms, r.last_ms) for r in dropped.values()} == {
        (4, DAY_MS + 1000, DAY_MS + 4000)
    }
    assert writer.pending_rows == 2 * len(SYMBOLS)
    writer.close()
    kept = events_for(DAY_MS, 1) + [e for events in backlog[4:] for e in events]
    assert dataset_rows(tmp_path) == rows_of(kept)


def test_retries_back_off_doubling_up_to_the_cap(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    writer = make_writer(tmp_path)
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 1, symbols=SYMBOLS[:1]))
    blocked = block_partition(tmp_path, SYMBOLS[0])
    clock.advance(MAX_AGE)
    [job] = writer.take_seal_jobs()
    waits = []
    for _ in range(9):
        with pytest.raises(StorageError):
            writer.finish_seals([writer.publish(job)])
        waited = 0.0
        while not (retried := writer.take_seal_jobs()):
            clock.advance(0.5)
            waited += 0.5
        assert retried == [job]
        waits.append(waited)

    assert waits == [RETRY_FIRST * 2**i for i in range(6)] + [RETRY_MAX] * 3
    blocked.unlink()
    writer.finish_seals([writer.publish(job)])
    assert writer.sealing_partitions == 0


def test_a_rotation_hands_every_partition_over_and_keeps_the_old_segment_until_sealed(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    events = events_for(DAY_MS, 2)
    writer, jobs = rotated(tmp_path, make_writer, clock, events)

    assert sorted(job.key.symbol for job in jobs) == sorted(SYMBOLS)
    assert {job.reason for job in jobs} == {SealReason.AGE}
    assert writer.take_seal_jobs() == []  # in flight: not handed over twice
    assert len(segments(tmp_path)) == 2  # rotated; the retired segment holds their rows
    results = [writer.publish(job) for job in jobs[:1]]
    writer.finish_seals(results)
    assert len(segments(tmp_path)) == 2
    crashed = crash_copy(tmp_path, tmp_path.with_name(tmp_path.name + "-crashed"))
    sealed = writer.finish_seals([writer.publish(job) for job in jobs[1:]])

    assert len(sealed) == len(SYMBOLS) - 1
    assert writer.buffered_rows == 0
    assert len(segments(tmp_path)) == 1  # deleted once its partitions are sealed
    assert dataset_rows(tmp_path) == rows_of(events)
    make_writer(crashed, instance_id="other").open()
    assert dataset_rows(crashed) == rows_of(events)  # a crash mid-rotation loses nothing


def test_a_crash_between_a_publication_and_its_sealed_record_keeps_the_newer_rows(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    old = events_for(DAY_MS, 3)
    writer, jobs = rotated(tmp_path, make_writer, clock, old)
    for job in jobs:
        writer.publish(job)  # the files are in place; their SEALED records never come
    new = events_for(DAY_MS + 3000, 2)
    writer.write_ahead(new)  # newer rows of the same partitions, logged beside the jobs
    crashed = crash_copy(tmp_path, tmp_path.with_name(tmp_path.name + "-crashed"))

    report = make_writer(crashed, instance_id="other").open()

    assert report.files_already_published == len(SYMBOLS)
    assert dataset_rows(crashed) == rows_of(old + new)  # nothing lost, nothing twice
    assert len(data_files(crashed)) == 2 * len(SYMBOLS)
