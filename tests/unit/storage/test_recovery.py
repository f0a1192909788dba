"""Recovery on open: replaying leftover segments of this and dead instances, never twice."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from writer_support import (
    DAY,
    DAY_MS,
    SYMBOLS,
    WriterFactory,
    assert_layout,
    crash_copy,
    crashed_after_writing,
    data_files,
    dataset_rows,
    events_for,
    rows_of,
    segments,
    ticker,
)

from recorder.storage.paths import new_session_token, partition_dir, segment_file_name
from recorder.storage.recovery import recover_instance
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


def test_an_idle_instance_directory_is_not_locked_by_others(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    idle = tmp_path / "_wal" / "idle"
    idle.mkdir(parents=True)

    report = make_writer(tmp_path).open()

    assert report.instances_skipped == ()
    assert report.instances_recovered == ()
    assert sorted(path.name for path in idle.iterdir()) == []


CHILD = """
import sys
from pathlib import Path

from recorder.clock import SystemClock
from recorder.model import MiniTicker
from recorder.storage.writer import DatasetWriter

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


def test_recovery_publishes_what_it_can_and_keeps_the_rest_for_the_next_start(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    crashed = crashed_after_writing(make_writer, tmp_path, events)
    blocked = partition_dir(crashed, DAY, min(SYMBOLS))
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("in the way")

    first = make_writer(crashed)
    report = first.open()
    first.close()
    assert any("kept" in problem and min(SYMBOLS) in problem for problem in report.problems)
    published = {path.parent.name for path in data_files(crashed)}
    assert published == {f"symbol={symbol}" for symbol in SYMBOLS if symbol != min(SYMBOLS)}
    assert segments(crashed)  # the rows it could not publish are still in the log

    blocked.unlink()
    second = make_writer(crashed)
    second.open()
    second.close()
    assert dataset_rows(crashed) == rows_of(events)  # each row once, none lost
    assert segments(crashed) == []


def test_a_stop_during_recovery_ends_it_and_the_next_start_publishes_the_rest_once(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 3)
    crashed = crashed_after_writing(make_writer, tmp_path, events)

    def stop_after_one_partition() -> bool:
        # Asked before each segment and each partition: true once the first file is in place.
        return len(data_files(crashed)) >= 1

    first = make_writer(crashed)
    report = first.open(should_stop=stop_after_one_partition)
    first.close()
    assert report.interrupted
    assert len(report.files_published) == 1
    assert len(data_files(crashed)) == 1
    assert segments(crashed)  # the rest stays in the log

    second = make_writer(crashed)
    rest = second.open()
    second.close()
    assert not rest.interrupted
    assert rest.files_already_published == 1
    assert len(rest.files_published) == len(SYMBOLS) - 1
    assert dataset_rows(crashed) == rows_of(events)  # each row once, none lost
    assert segments(crashed) == []
    assert_layout(crashed)


def test_a_stop_asked_before_recovery_publishes_nothing(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    crashed = crashed_after_writing(make_writer, tmp_path, events_for(DAY_MS, 3))
    writer = make_writer(crashed)
    report = writer.open(should_stop=lambda: True)
    writer.close()
    assert report.interrupted
    assert report.files_published == ()
    assert data_files(crashed) == []
    assert segments(crashed)


def test_recovering_one_instance_leaves_the_others_alone(
    tmp_path: Path, make_writer: WriterFactory
) -> None:
    events = events_for(DAY_MS, 2)
    crashed = crashed_after_writing(make_writer, tmp_path, events)
    beta = crashed_after_writing(make_writer, tmp_path / "beta", events, instance_id="beta")
    shutil.copytree(beta / "_wal" / "beta", crashed / "_wal" / "beta")

    report = recover_instance(crashed, "alpha")

    assert report.instances_recovered == ("alpha",)
    assert report.rows_published == len(events)
    assert segments(crashed) == []
    assert segments(crashed, "beta")
