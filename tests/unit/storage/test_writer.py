import contextlib
import datetime as dt
import fcntl
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recorder.clock import ManualClock, day_start_ms
from recorder.errors import StorageError, UnsafePathError
from recorder.model import MiniTicker
from recorder.storage.paths import new_session_token, parse_data_file_name, segment_file_name
from recorder.storage.schema import build_wal_batch
from recorder.storage.sealing import SealReason
from recorder.storage.wal import (
    FORMAT_VERSION,
    RecordType,
    SealedMarker,
    SegmentHeader,
    WalRecord,
    WalSegment,
    encode_batch,
    encode_json,
)
from recorder.storage.writer import DatasetWriter, RecoveryReport

DAY = dt.date(2026, 3, 27)
DAY_MS = day_start_ms(DAY)
NEXT_DAY_MS = DAY_MS + 86_400_000
GRACE_MS = 5_000
MAX_AGE = 3600.0
SYMBOLS = ("BTCUSDT", "币安人生USDT", "BTCUSDT_260327")

Row = tuple[str, int, Decimal]
WriterFactory = Callable[..., DatasetWriter]


def ticker(symbol: str, event_time: int, close: str = "1.5") -> MiniTicker:
    return MiniTicker(
        symbol, event_time, close, "1", "2", "0.5", "10.25", "15.125", event_time * 1000 + 7
    )


def events_for(
    start_ms: int, count: int, symbols: tuple[str, ...] = SYMBOLS, step_ms: int = 1000
) -> list[MiniTicker]:
    return [
        ticker(symbol, start_ms + i * step_ms, f"{i}.{i:08d}")
        for i in range(count)
        for symbol in symbols
    ]


def rows_of(events: list[MiniTicker]) -> Counter[Row]:
    return Counter((e.symbol, e.event_time, Decimal(e.close)) for e in events)


def data_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def dataset_rows(root: Path) -> Counter[Row]:
    if not data_files(root):
        return Counter()
    table = ds.dataset(root, partitioning="hive").to_table()
    return Counter(
        (str(symbol), round(event_time.timestamp() * 1000), close)
        for symbol, event_time, close in zip(
            table["symbol"].to_pylist(),
            table["event_time"].to_pylist(),
            table["close"].to_pylist(),
            strict=True,
        )
    )


def assert_layout(root: Path) -> None:
    """Only sealed, sorted data files end in .parquet, and only inside date=/symbol= dirs."""
    for path in root.rglob("*"):
        if not path.name.endswith(".parquet"):
            continue
        relative = path.relative_to(root).parts
        assert len(relative) == 3, path
        assert relative[0].startswith("date="), path
        assert relative[1].startswith("symbol="), path
        assert parse_data_file_name(path.name) is not None, path
        event_times = pq.read_table(path, columns=["event_time"])["event_time"].to_pylist()
        assert event_times == sorted(event_times), path


def segments(root: Path, instance_id: str = "alpha") -> list[Path]:
    return sorted((root / "_wal" / instance_id).glob("*.wal"))


def crash_copy(root: Path, destination: Path) -> Path:
    """The files as a crash at this instant would leave them (every append was fsynced)."""
    shutil.copytree(root, destination, symlinks=True)
    return destination


def crashed_after_writing(
    make_writer: WriterFactory, tmp_path: Path, events: list[MiniTicker], instance_id: str = "alpha"
) -> Path:
    """A root as a crash leaves it after ``instance_id`` logged ``events`` (nothing sealed)."""
    writer = make_writer(tmp_path / "live", instance_id=instance_id)
    writer.open()
    writer.write_ahead(events)
    return crash_copy(writer.root, tmp_path / "crashed")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(monotonic=100.0)


@pytest.fixture
def make_writer(clock: ManualClock) -> Iterator[WriterFactory]:
    created: list[DatasetWriter] = []

    def factory(root: Path, **overrides: object) -> DatasetWriter:
        settings: dict[str, object] = {
            "instance_id": "alpha",
            "max_file_age": MAX_AGE,
            "max_file_bytes": 1 << 30,
            "day_grace_ms": GRACE_MS,
            "clock": clock,
        }
        settings.update(overrides)
        writer = DatasetWriter(root, **settings)  # type: ignore[arg-type]
        created.append(writer)
        return writer

    yield factory
    for writer in created:
        with contextlib.suppress(StorageError):
            writer.close()


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


def test_a_crash_loses_nothing_that_write_ahead_acknowledged(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    events = events_for(DAY_MS, 30)
    for start in range(0, 90, 9):
        writer.write_ahead(events[start : start + 9])
    crashed = crash_copy(writer.root, tmp_path / "crashed")

    report = make_writer(crashed).open()

    assert report.instances_recovered == ("alpha",)
    assert report.rows_published == 90
    assert report.segments_replayed == 1
    assert report.damaged_segments == ()
    assert {f.reason for f in report.files_published} == {SealReason.RECOVERY}
    assert dataset_rows(crashed) == rows_of(events)
    assert_layout(crashed)


def test_a_dead_instance_is_recovered_by_another_instance(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 5)
    crashed = crashed_after_writing(make_writer, tmp_path, events, instance_id="dead-host")

    survivor = make_writer(crashed, instance_id="survivor")
    report = survivor.open()

    assert report.instances_recovered == ("dead-host",)
    assert dataset_rows(crashed) == rows_of(events)
    assert not (crashed / "_wal" / "dead-host").exists()
    new_events = events_for(DAY_MS + 5000, 5)
    survivor.write_ahead(new_events)
    survivor.close()
    assert dataset_rows(crashed) == rows_of(events) + rows_of(new_events)


def test_a_crash_after_some_seals_recovers_only_the_unsealed_rows(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live", max_file_bytes=2_000)
    writer.open()
    events = events_for(DAY_MS, 40, symbols=("BTCUSDT", "ETHUSDT"))
    sealed = []
    for start in range(0, 80, 4):
        writer.write_ahead(events[start : start + 4])
        sealed += writer.seal_due()
    assert sealed
    assert {f.reason for f in sealed} == {SealReason.SIZE}
    assert writer.buffered_rows > 0
    crashed = crash_copy(writer.root, tmp_path / "crashed")

    report = make_writer(crashed).open()

    assert report.rows_published == writer.buffered_rows
    assert report.files_already_published == 0
    assert dataset_rows(crashed) == rows_of(events)
    assert_layout(crashed)


def test_a_crash_between_rename_and_sealed_record_does_not_duplicate(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    events = events_for(DAY_MS, 10)
    writer.write_ahead(events)
    # The log as it was before sealing, plus the files the seal published: exactly the state
    # of a crash after the renames and before the SEALED records reached the log.
    crashed = crash_copy(writer.root, tmp_path / "crashed")
    published = writer.close()
    for sealed in published[:2]:
        target = crashed / sealed.path.relative_to(writer.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sealed.path, target)

    report = make_writer(crashed).open()

    assert report.files_already_published == 2
    assert len(report.files_published) == 1
    assert dataset_rows(crashed) == rows_of(events)
    assert len(data_files(crashed)) == 3


def test_recovery_interrupted_and_repeated_gives_the_same_result(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 10)
    crashed = crashed_after_writing(make_writer, tmp_path, events)
    reference = crash_copy(crashed, tmp_path / "reference")
    reference_report = make_writer(reference, instance_id="other").open()
    reference_names = sorted(path.relative_to(reference) for path in data_files(reference))

    # A recovery that crashed after publishing one file, in the middle of writing another.
    first = reference_report.files_published[0]
    second = reference_report.files_published[1]
    (crashed / first.path.relative_to(reference)).parent.mkdir(parents=True)
    shutil.copy2(first.path, crashed / first.path.relative_to(reference))
    temp = crashed / second.path.relative_to(reference).parent / f".{second.path.name}.tmp"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(second.path.read_bytes()[:100])

    report = make_writer(crashed, instance_id="other").open()

    assert report.files_already_published == 1
    assert len(report.files_published) == 2
    assert sorted(path.relative_to(crashed) for path in data_files(crashed)) == reference_names
    assert not temp.exists()
    assert dataset_rows(crashed) == rows_of(events)
    assert [p.name for p in crashed.rglob("*.tmp")] == []


def test_recovering_an_already_recovered_root_changes_nothing(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    writer.write_ahead(events_for(DAY_MS, 3))
    crashed = crash_copy(writer.root, tmp_path / "crashed")
    make_writer(crashed, instance_id="b").open()
    before = {path: path.read_bytes() for path in data_files(crashed)}

    report = make_writer(crashed, instance_id="c").open()

    assert report.files_published == ()
    assert report.instances_recovered == ()
    assert {path: path.read_bytes() for path in data_files(crashed)} == before


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

    rejected = writer.write_ahead([hostile, *good, unfit])
    writer.close()

    assert [r.reason.split(":")[0] for r in rejected] == ["unsafe_symbol", "decimal_unfit"]
    assert "../../escape" in rejected[0].raw
    assert dataset_rows(root) == rows_of(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


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

    with pytest.raises(StorageError, match="closing failed"):
        writer.close()

    assert writer.buffered_rows == 3  # the next day's rows; today's file was published
    assert len(data_files(tmp_path)) == 1
    assert not list(tmp_path.rglob("*.tmp"))
    blocker.unlink()
    sealed = writer.close()
    # The file published before the failure is reported too.
    assert sorted((f.date, f.rows) for f in sealed) == [(DAY, 3), (DAY + dt.timedelta(1), 3)]
    assert dataset_rows(tmp_path) == rows_of(today + tomorrow)


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


def test_replay_counts_a_record_resent_after_a_failed_append_once(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    # The first segment kept a complete copy of lsn 2 although its append was reported as
    # failed; the writer re-sent lsn 2 in a new segment.
    session = new_session_token("dead", 1_774_569_600_000_000)
    directory = tmp_path / "_wal" / "dead"
    directory.mkdir(parents=True)
    batches = [build_wal_batch(events_for(DAY_MS + i * 10_000, 2)) for i in range(3)]
    data = [WalRecord(RecordType.DATA, i + 1, encode_batch(b)) for i, b in enumerate(batches)]
    for sequence, records in ((1, data[:2]), (2, data[1:])):
        segment = WalSegment.create(
            directory,
            segment_file_name(session, sequence),
            SegmentHeader(FORMAT_VERSION, session, sequence),
            0,
        )
        segment.append(records)
        segment.close()

    report = make_writer(tmp_path).open()

    assert report.segments_replayed == 2
    assert sum(dataset_rows(tmp_path).values()) == 18
    assert max(dataset_rows(tmp_path).values()) == 1


def test_replay_drops_rows_covered_by_a_sealed_record(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    session = new_session_token("dead", 1_774_569_600_000_000)
    directory = tmp_path / "_wal" / "dead"
    directory.mkdir(parents=True)
    sealed_rows = [ticker("BTCUSDT", DAY_MS)]
    open_rows = [ticker("BTCUSDT", DAY_MS + 1000)]
    marker = SealedMarker("2026-03-27", "BTCUSDT", "published.parquet", 1, 1, 1)
    segment = WalSegment.create(
        directory, segment_file_name(session, 1), SegmentHeader(FORMAT_VERSION, session, 1), 0
    )
    segment.append(
        [
            WalRecord(RecordType.DATA, 1, encode_batch(build_wal_batch(sealed_rows))),
            WalRecord(RecordType.SEALED, 2, encode_json(marker)),
            WalRecord(RecordType.DATA, 3, encode_batch(build_wal_batch(open_rows))),
            WalRecord(77, 4, b"a future record type"),
        ]
    )
    segment.close()

    report = make_writer(tmp_path).open()

    [published] = report.files_published
    assert published.path.name.endswith("-000000000003.parquet")
    assert dataset_rows(tmp_path) == rows_of(open_rows)


def test_a_torn_segment_tail_is_reported_and_the_good_records_recovered(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    writer = make_writer(tmp_path / "live")
    writer.open()
    kept = events_for(DAY_MS, 2)
    torn = events_for(DAY_MS + 2000, 2)
    writer.write_ahead(kept)
    length_before = writer.wal_bytes
    writer.write_ahead(torn)
    crashed = crash_copy(writer.root, tmp_path / "crashed")
    [segment_path] = segments(crashed)
    os.truncate(segment_path, length_before + (writer.wal_bytes - length_before) // 2)

    report = make_writer(crashed).open()

    assert len(report.damaged_segments) == 1
    assert "torn" in report.damaged_segments[0]
    assert dataset_rows(crashed) == rows_of(kept)


def test_an_instance_whose_lock_is_held_is_left_alone_until_it_is_free(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    crashed = crashed_after_writing(make_writer, tmp_path, events, instance_id="busy")
    lock_path = crashed / "_wal" / "busy" / "instance.lock"

    with lock_path.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other = make_writer(crashed, instance_id="other")
        report = other.open()
        other.close()
    assert report.instances_skipped == ("busy",)
    assert report.instances_recovered == ()
    assert data_files(crashed) == []
    assert len(segments(crashed, "busy")) == 1

    report = make_writer(crashed, instance_id="third").open()

    assert report.instances_recovered == ("busy",)
    assert dataset_rows(crashed) == rows_of(events)


def test_an_instance_id_can_run_only_once(tmp_path: Path, make_writer: WriterFactory) -> None:
    make_writer(tmp_path).open()
    with pytest.raises(StorageError, match="already running"):
        make_writer(tmp_path).open()


def test_an_instance_id_running_elsewhere_is_named_in_the_error(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    make_writer(tmp_path).open()
    with pytest.raises(StorageError, match=rf"locked by {os.getpid()} "):
        make_writer(tmp_path).open()


def test_the_owner_waits_while_another_recorder_recovers_its_old_segments(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    crashed = crashed_after_writing(make_writer, tmp_path, events)
    lock_path = crashed / "_wal" / "alpha" / "instance.lock"
    opened = threading.Event()
    outcome: list[RecoveryReport | StorageError] = []

    def open_owner() -> None:
        try:
            outcome.append(make_writer(crashed).open())
        except StorageError as exc:
            outcome.append(exc)
        opened.set()

    with lock_path.open("r+b") as recoverer:
        fcntl.flock(recoverer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        recoverer.truncate()
        recoverer.write(b"recovering 4242 elsewhere\n")
        recoverer.flush()
        owner = threading.Thread(target=open_owner)
        owner.start()
        # Well past the grace a live holder gets: a recoverer is waited for, however long.
        assert not opened.wait(3)
        # A recoverer that emptied the directory removes the lock file on its way out.
        lock_path.unlink()
    owner.join(10)

    [report] = outcome
    assert isinstance(report, RecoveryReport), report
    assert report.instances_recovered == ("alpha",)
    assert dataset_rows(crashed) == rows_of(events)


def test_an_idle_instance_directory_is_not_locked_by_others(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    idle = tmp_path / "_wal" / "idle"
    idle.mkdir(parents=True)

    report = make_writer(tmp_path).open()

    assert report.instances_skipped == ()
    assert report.instances_recovered == ()
    assert sorted(path.name for path in idle.iterdir()) == []


def test_recorders_starting_together_on_one_root_all_open(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    """Each starting recorder scans the others' directories while they are being created."""

    def start(writer: DatasetWriter, barrier: threading.Barrier, failures: list[Exception]) -> None:
        barrier.wait()
        try:
            writer.open()
        except StorageError as exc:
            failures.append(exc)

    for attempt in range(20):
        root = tmp_path / str(attempt)
        writers = [make_writer(root, instance_id=f"i{n}") for n in range(4)]
        barrier = threading.Barrier(len(writers))
        failures: list[Exception] = []
        threads = [
            threading.Thread(target=start, args=(writer, barrier, failures)) for writer in writers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert failures == []
        for writer in writers:
            writer.close()


def test_an_unusable_root_raises_storage_error(tmp_path: Path, make_writer: WriterFactory) -> None:
    root = tmp_path / "file"
    root.write_text("a file, not a directory")
    with pytest.raises(StorageError, match="cannot use dataset root"):
        make_writer(root).open()


def test_an_unsafe_instance_id_is_refused(tmp_path: Path, make_writer: WriterFactory) -> None:
    with pytest.raises(UnsafePathError):
        make_writer(tmp_path, instance_id="../escape")


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


CHILD = """
import sys
from pathlib import Path

from recorder.clock import SystemClock
from recorder.model import MiniTicker
from recorder.storage.writer import DatasetWriter, RecoveryReport

writer = DatasetWriter(
    Path(sys.argv[1]), instance_id="child", max_file_age=3600.0, max_file_bytes=20_000,
    day_grace_ms=0, clock=SystemClock(),
)
writer.open()
n = 0
while True:
    writer.write_ahead([
        MiniTicker(symbol, 1_774_569_600_000 + n, f"{n}.5", "1", "1", "1", "1", "1", 0)
        for symbol in ("AAA", "BBB", "币安人生USDT")
    ])
    writer.seal_due()
    print(n, flush=True)
    n += 1
"""


@pytest.mark.parametrize("acknowledged", [1, 120, 400])
def test_kill_9_loses_no_acknowledged_event_and_duplicates_none(
    tmp_path: Path, make_writer: WriterFactory, acknowledged: int
) -> None:
    root = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for _ in range(acknowledged):
        line = child.stdout.readline()
        assert line, child.communicate()[1]
    child.kill()
    child.communicate()

    report = make_writer(root, instance_id="parent").open()

    assert report.instances_recovered == ("child",)
    rows = dataset_rows(root)
    assert max(rows.values()) == 1
    for symbol in ("AAA", "BBB", "币安人生USDT"):
        offsets = sorted(t - 1_774_569_600_000 for s, t, _ in rows if s == symbol)
        # Every acknowledged write is there, and what is there is a prefix of what was written.
        assert offsets == list(range(len(offsets)))
        assert len(offsets) >= acknowledged
    if acknowledged > 200:
        assert len(data_files(root)) > 3  # the child had sealed files by size before it died
    assert_layout(root)
