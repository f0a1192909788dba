"""A publisher that falls behind: due partitions wait their turn, and rows beyond the memory
bound move to spill files instead of growing the resident set; nothing is lost or doubled."""

import contextlib
from pathlib import Path

import pytest
from writer_support import (
    DAY_MS,
    MAX_AGE,
    WriterFactory,
    assert_layout,
    block_partition,
    crash_copy,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
    ticker,
)

from recorder.clock import ManualClock
from recorder.errors import ConfigError, StorageError
from recorder.model import MiniTicker
from recorder.storage.seal_jobs import SealJob
from recorder.storage.spill import SPILL_DIR_NAME
from recorder.storage.writer import DatasetWriter

SYMBOLS = tuple(f"S{number:02d}USDT" for number in range(20))
SEAL_BUDGET = 30_000
PUBLISH_BUDGET = 8_000


def spill_dir(root: Path) -> Path:
    return root / "_wal" / "alpha" / SPILL_DIR_NAME


def spilled_files(root: Path) -> list[Path]:
    return sorted(spill_dir(root).glob("*")) if spill_dir(root).is_dir() else []


@pytest.fixture
def lagging(tmp_path: Path, make_writer: WriterFactory) -> DatasetWriter:
    """An open writer with small budgets, at ``tmp_path/data``."""
    writer = make_writer(
        tmp_path / "data", buffer_budget=SEAL_BUDGET, publish_budget=PUBLISH_BUDGET
    )
    writer.open()
    return writer


def record_without_publishing(
    writer: DatasetWriter, flushes: int, start_ms: int = DAY_MS
) -> tuple[list[MiniTicker], list[SealJob], list[int]]:
    """Log ``flushes`` flushes of every symbol; the jobs handed over are never published."""
    events: list[MiniTicker] = []
    jobs: list[SealJob] = []
    held: list[int] = []
    for flush in range(flushes):
        # Closes with eight decimals, all different: a spill must keep them exact.
        batch = [
            ticker(symbol, start_ms + flush * 2000, f"{flush}.{flush:08d}") for symbol in SYMBOLS
        ]
        writer.write_ahead(batch)
        writer.take_durable()
        events += batch
        jobs += writer.take_seal_jobs()
        held.append(writer.buffered_bytes)
    return events, jobs, held


def publish_everything(writer: DatasetWriter, jobs: list[SealJob]) -> None:
    """The publisher catches up: every job handed over and every one still due, in turn."""
    while jobs:
        writer.finish_seals([writer.publish(job) for job in jobs])
        jobs = writer.take_seal_jobs()


def catch_up_and_close(
    writer: DatasetWriter, jobs: list[SealJob], events: list[MiniTicker]
) -> None:
    """Publish everything and stop: every event once in the dataset, no spill file left."""
    publish_everything(writer, jobs)
    writer.close()
    assert dataset_rows(writer.root) == rows_of(events)
    assert not spill_dir(writer.root).exists()


def test_a_lagging_publisher_spills_rows_instead_of_holding_them(lagging: DatasetWriter) -> None:
    writer, root = lagging, lagging.root
    events, jobs, held = record_without_publishing(writer, 300)

    # 6,000 rows of about 150 Arrow bytes wait; memory holds at most the two budgets' worth.
    assert writer.buffered_rows == len(events)
    assert max(held) <= SEAL_BUDGET + PUBLISH_BUDGET
    assert writer.spilled_bytes > 2 * (SEAL_BUDGET + PUBLISH_BUDGET)
    spilled = spilled_files(root)
    assert spilled
    assert writer.spill.files == len(spilled)
    assert all(path.suffix == ".arrow" for path in spilled)
    assert_layout(root)  # no spill file is a .parquet a reader would pick up

    catch_up_and_close(writer, jobs, events)


def test_a_published_partition_deletes_its_spill_files(lagging: DatasetWriter) -> None:
    writer, root = lagging, lagging.root
    events, jobs, _ = record_without_publishing(writer, 300)
    assert spilled_files(root)

    publish_everything(writer, jobs)

    assert writer.spill.files == 0
    assert not spilled_files(root)
    assert writer.spilled_bytes == 0
    assert dataset_rows(root) == rows_of(events)


def test_a_crash_with_spill_files_recovers_from_the_log_once(
    lagging: DatasetWriter, tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer, root = lagging, lagging.root
    events, jobs, _ = record_without_publishing(writer, 300)
    # Some of the jobs were published before the crash, their SEALED records logged.
    writer.finish_seals([writer.publish(job) for job in jobs[:3]])
    crashed = crash_copy(root, tmp_path / "crashed")
    assert spilled_files(crashed)

    survivor = make_writer(crashed)
    report = survivor.open()
    survivor.close()

    assert not report.problems
    assert dataset_rows(crashed) == rows_of(events)
    assert not spill_dir(crashed).exists()


def test_a_spilled_partition_that_cannot_be_written_keeps_its_rows_until_it_can(
    lagging: DatasetWriter, clock: ManualClock
) -> None:
    writer, root = lagging, lagging.root
    blocked = block_partition(root, SYMBOLS[0])
    events, jobs, _ = record_without_publishing(writer, 300)
    clock.advance(MAX_AGE)  # a rotation: every partition is due
    jobs += writer.take_seal_jobs()
    for _ in range(40):  # the publisher catches up, but one partition keeps failing
        results = [writer.publish(job) for job in jobs]
        with contextlib.suppress(StorageError):  # the blocked partition's, retried later
            writer.finish_seals(results)
        clock.advance(5.0)
        jobs = writer.take_seal_jobs()
    # Every other partition is published; the blocked one's rows all still wait.
    published = {path.parent.name for path in data_files(root)}
    assert published == {f"symbol={symbol}" for symbol in SYMBOLS[1:]}
    assert writer.buffered_rows == sum(event.symbol == SYMBOLS[0] for event in events)

    blocked.unlink()
    clock.advance(120.0)
    catch_up_and_close(writer, writer.take_seal_jobs(), events)


def test_a_spill_file_damaged_while_running_holds_up_its_partition_alone_and_the_log_restores_it(
    lagging: DatasetWriter, clock: ManualClock, tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer, root = lagging, lagging.root
    events, jobs, _ = record_without_publishing(writer, 300)
    damaged = spilled_files(root)[0]
    damaged.write_bytes(damaged.read_bytes()[:100])  # torn: not an Arrow file any more
    clock.advance(MAX_AGE)
    jobs += writer.take_seal_jobs()
    failures = 0
    for _ in range(40):
        results = [writer.publish(job) for job in jobs]
        try:
            writer.finish_seals(results)
        except StorageError:  # the damaged partition's job, retried with backoff
            failures += 1
        clock.advance(5.0)
        jobs = writer.take_seal_jobs()

    # One partition waits on its damaged spill file; every other one is published.
    assert failures
    published = {path.parent.name for path in data_files(root)}
    waiting = {f"symbol={symbol}" for symbol in SYMBOLS} - published
    assert len(waiting) == 1
    # Its rows are still in the write-ahead log: the next start publishes them from there, once.
    crashed = crash_copy(root, tmp_path / "crashed")
    survivor = make_writer(crashed)
    report = survivor.open()
    survivor.close()
    assert not report.problems
    assert dataset_rows(crashed) == rows_of(events)
    assert_layout(crashed)


def test_a_spill_that_cannot_be_written_keeps_the_rows_in_memory(lagging: DatasetWriter) -> None:
    writer, root = lagging, lagging.root
    spill_dir(root).write_text("in the way")
    events, jobs, _ = record_without_publishing(writer, 300)

    assert writer.spill.failures
    assert writer.spilled_bytes == 0
    assert writer.buffered_rows == len(events)
    spill_dir(root).unlink()
    catch_up_and_close(writer, jobs, events)


def test_due_partitions_are_handed_over_as_the_publisher_makes_room(
    tmp_path: Path, make_writer: WriterFactory, clock: ManualClock
) -> None:
    root = tmp_path / "data"
    writer = make_writer(root, publish_budget=PUBLISH_BUDGET)
    writer.open()
    events = events_for(DAY_MS, 30, SYMBOLS)
    writer.write_ahead(events)
    clock.advance(MAX_AGE)

    handed: list[list[str]] = []
    jobs = writer.take_seal_jobs()
    while jobs:
        handed.append([job.key.symbol for job in jobs])
        assert sum(job.partition.held_nbytes for job in jobs[1:]) <= PUBLISH_BUDGET
        assert writer.take_seal_jobs() == []  # nothing more until the publisher answers
        writer.finish_seals([writer.publish(job) for job in jobs])
        jobs = writer.take_seal_jobs()

    assert len(handed) > 1
    assert sorted(symbol for batch in handed for symbol in batch) == sorted(SYMBOLS)
    assert [symbol for batch in handed for symbol in batch] == sorted(SYMBOLS)
    assert len(data_files(root)) == len(SYMBOLS)
    assert dataset_rows(root) == rows_of(events)


def test_a_publish_budget_must_be_positive(tmp_path: Path, make_writer: WriterFactory) -> None:
    with pytest.raises(ConfigError, match="publish_budget"):
        make_writer(tmp_path, publish_budget=0)
