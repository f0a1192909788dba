"""Tests of :mod:`recorder.reports.verify`: every file checked, data gaps against the log."""

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recorded_dataset import (
    BTC,
    ETH,
    NOW,
    T0,
    every,
    gap,
    log_gaps,
    ticker,
    write_data_file,
)

from recorder.clock import MS_PER_DAY, ManualClock
from recorder.errors import StorageError
from recorder.gaps.detector import GapCause, GapDetector
from recorder.gaps.log import GapLog
from recorder.reports.findings import FindingKind, VerifyReport
from recorder.reports.read import ExitCode
from recorder.reports.verify import run_verify
from recorder.storage.writer import DatasetWriter

DAY = dt.date(2024, 5, 1)


def kinds(report: VerifyReport) -> list[FindingKind]:
    return [finding.kind for finding in report.findings]


def test_verify_a_clean_dataset(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 60_000), name="a.parquet")
    write_data_file(tmp_path, BTC, every(T0 + 70_000, T0 + 120_000), name="b.parquet")
    write_data_file(tmp_path, ETH, every(T0 + 1, T0 + 120_000))
    log_gaps(tmp_path, gap(BTC, T0 + 58_000, T0 + 70_000, 5, GapCause.DISCONNECT))
    report = run_verify(tmp_path)
    assert report.findings == ()
    assert report.exit_code is ExitCode.OK
    assert (report.files, report.partitions, report.rows) == (3, 2, 30 + 25 + 60)
    assert (report.data_gaps, report.logged_gaps) == (1, 1)
    assert report.render_text() == [
        "OK: verified 3 files in 2 partitions (115 rows), 1 gap in the data, 1 logged gap: "
        "0 problems, 0 notices"
    ]


def test_verify_what_the_recorder_itself_wrote(tmp_path: Path) -> None:
    clock = ManualClock(wall_us=NOW * 1000)
    writer = DatasetWriter(
        tmp_path,
        instance_id="host-a",
        max_file_age=3600.0,
        max_file_bytes=1 << 30,
        day_grace_ms=0,
        clock=clock,
    )
    detector = GapDetector()
    log = GapLog(tmp_path, "host-a")
    writer.open()
    midnight = T0 + 14 * 3_600_000  # 2024-05-02T00:00:00Z
    times = every(midnight - 60_000, midnight - 20_000) + every(
        midnight - 10_000, midnight + 60_000
    )
    events = [ticker(symbol, e + offset) for e in times for offset, symbol in enumerate((BTC, ETH))]
    for event in events:
        detector.on_frame("0.1")
        found = detector.observe(event, "0.1", NOW * 1000)
        if found is not None:
            log.append([found])
    writer.write_ahead(events)
    writer.close()
    log.flush()
    report = run_verify(tmp_path)
    assert report.findings == ()
    assert (report.partitions, report.rows, report.data_gaps) == (4, len(events), 2)


def test_verify_finds_a_duplicate_across_files(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 20_000), name="a.parquet")
    write_data_file(tmp_path, BTC, every(T0 + 16_000, T0 + 30_000), name="b.parquet")
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.DUPLICATE]
    assert report.findings[0].message == (
        "BTCUSDT on 2024-05-01: 2 duplicate events (first at 2024-05-01T10:00:16.000Z) in "
        "a.parquet, b.parquet"
    )
    assert report.exit_code is ExitCode.PROBLEMS


def test_verify_finds_a_duplicate_within_a_file(tmp_path: Path) -> None:
    path = write_data_file(tmp_path, BTC, [T0, T0 + 2000, T0 + 2000, T0 + 4000])
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.DUPLICATE]
    assert path.name in report.findings[0].message


def test_verify_finds_an_unsorted_file(tmp_path: Path) -> None:
    path = write_data_file(tmp_path, BTC, [T0, T0 + 4000, T0 + 2000, T0 + 6000])
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.UNSORTED]
    assert report.findings[0].path == path


def test_verify_finds_a_truncated_file(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 20_000), name="a.parquet")
    path = write_data_file(tmp_path, BTC, every(T0 + 20_000, T0 + 40_000), name="b.parquet")
    write_data_file(tmp_path, BTC, every(T0 + 40_000, T0 + 60_000), name="c.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = run_verify(tmp_path)
    # The rows of the unreadable file are missing: the data now has a gap the log lacks.
    assert kinds(report) == [FindingKind.UNREADABLE, FindingKind.UNLOGGED_GAP]
    assert report.findings[0].path == path
    assert report.exit_code is ExitCode.PROBLEMS


def test_verify_finds_an_unlogged_gap_and_a_filled_one(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 20_000) + every(T0 + 30_000, T0 + 40_000))
    log_gaps(tmp_path, gap(ETH, T0, T0 + 30_000, 14, GapCause.STALL))  # not BTC's
    write_data_file(tmp_path, ETH, every(T0, T0 + 40_000))  # ETH's gap was filled
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.UNLOGGED_GAP, FindingKind.GAP_FILLED]
    assert report.findings[0].message == (
        "BTCUSDT: gap in the data 2024-05-01T10:00:18.000Z -> 2024-05-01T10:00:30.000Z "
        "(5 missed updates) is not in the gap log"
    )
    assert [f.is_problem for f in report.findings] == [True, False]
    assert report.problems == 1


def test_verify_a_partly_filled_gap_is_still_covered(tmp_path: Path) -> None:
    # Logged 10:00:00 -> 10:01:00; a backfill later supplied 10:00:20..10:00:30.
    times = [T0, *every(T0 + 20_000, T0 + 32_000), T0 + 60_000]
    write_data_file(tmp_path, BTC, times)
    log_gaps(tmp_path, gap(BTC, T0, T0 + 60_000, 29, GapCause.RESTART))
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.GAP_FILLED]
    assert report.exit_code is ExitCode.OK
    assert report.data_gaps == 2


def test_verify_follows_a_symbol_across_midnight(tmp_path: Path) -> None:
    midnight = T0 + 14 * 3_600_000
    write_data_file(tmp_path, BTC, every(midnight - 10_000, midnight - 4000))
    write_data_file(tmp_path, BTC, every(midnight + 2000, midnight + 10_000))
    report = run_verify(tmp_path)
    assert kinds(report) == [FindingKind.UNLOGGED_GAP]
    log_gaps(tmp_path, gap(BTC, midnight - 6000, midnight + 2000, 3, GapCause.DISCONNECT))
    assert run_verify(tmp_path).findings == ()
    # One day alone knows nothing of the other.
    only = run_verify(tmp_path, dt.date(2024, 5, 2))
    assert (only.findings, only.files, only.logged_gaps) == ((), 1, 1)


def test_verify_a_single_day(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, [T0, T0 + 4000, T0 + 2000])
    write_data_file(tmp_path, BTC, every(T0 + MS_PER_DAY, T0 + MS_PER_DAY + 10_000))
    assert kinds(run_verify(tmp_path, dt.date(2024, 5, 2))) == []
    assert kinds(run_verify(tmp_path, DAY)) == [FindingKind.UNSORTED]
    assert run_verify(tmp_path, dt.date(2020, 1, 1)).files == 0


def test_verify_finds_rows_on_the_wrong_day_and_metadata_of_another_partition(
    tmp_path: Path,
) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), day=dt.date(2024, 5, 2))
    write_data_file(tmp_path, ETH, every(T0, T0 + 10_000), name="a.parquet", metadata_symbol=BTC)
    write_data_file(
        tmp_path,
        ETH,
        every(T0 + 10_000, T0 + 20_000),
        name="b.parquet",
        metadata_day=dt.date(2024, 4, 30),
    )
    report = run_verify(tmp_path)
    assert kinds(report) == [
        FindingKind.WRONG_DATE,
        FindingKind.METADATA_MISMATCH,
        FindingKind.METADATA_MISMATCH,
    ]
    assert "5 rows with an event_time not on 2024-05-02" in report.findings[0].message
    assert "'recorder.symbol' is 'BTCUSDT', but the partition is 'ETHUSDT'" in (
        report.findings[1].message
    )
    assert "'recorder.date' is '2024-04-30', but the partition is '2024-05-01'" in (
        report.findings[2].message
    )


def test_verify_finds_a_foreign_schema(tmp_path: Path) -> None:
    directory = tmp_path / "date=2024-05-01" / "symbol=BTCUSDT"
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "event_time": pa.array([T0, T0 + 2000], pa.timestamp("ms", tz="UTC")),
            "close": pa.array([1.5, 2.5], pa.float64()),
        }
    )
    pq.write_table(table, directory / "x.parquet")
    report = run_verify(tmp_path)
    assert kinds(report) == [
        FindingKind.SCHEMA_MISMATCH,
        FindingKind.METADATA_MISMATCH,
        FindingKind.METADATA_MISMATCH,
    ]
    message = report.findings[0].message
    assert "missing open" in message
    assert "close is double, expected decimal128(38, 18)" in message


def test_verify_finds_parquet_files_where_readers_would_trip(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000))
    good = (tmp_path / "date=2024-05-01" / "symbol=BTCUSDT" / "part-1.parquet").read_bytes()
    strays = [
        tmp_path / "_wal" / "host-a" / "leftover.parquet",
        tmp_path / "loose.parquet",
        tmp_path / "date=2024-05-01" / "symbol=BTCUSDT" / ".hidden.parquet",
    ]
    bad = tmp_path / "date=2024-5-1" / "symbol=BTCUSDT" / "x.parquet"
    for path in [*strays, bad]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good)
    # Temporary files are fine: they do not end in .parquet.
    (tmp_path / "date=2024-05-01" / "symbol=BTCUSDT" / ".part-2.parquet.tmp").write_bytes(b"x")
    report = run_verify(tmp_path)
    assert sorted((f.kind, f.path) for f in report.findings) == sorted(
        [(FindingKind.STRAY_PARQUET, path) for path in strays] + [(FindingKind.BAD_PARTITION, bad)]
    )
    assert report.files == 1


def test_verify_cannot_verify(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        run_verify(tmp_path / "missing")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(StorageError, match="not a directory"):
        run_verify(not_a_dir)
    bad_log = tmp_path / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    bad_log.parent.mkdir(parents=True)
    bad_log.write_text("[]\n")
    with pytest.raises(StorageError, match="bad gap log record"):
        run_verify(tmp_path)


def test_verify_document(tmp_path: Path) -> None:
    path = write_data_file(tmp_path, BTC, [T0, T0 + 4000, T0 + 2000])
    document = run_verify(tmp_path).to_document()
    assert document["status"] == "problems"
    assert document["exit_code"] == 1
    assert document["findings"] == [
        {
            "kind": "unsorted",
            "severity": "problem",
            "symbol": BTC,
            "path": str(path),
            "message": f"{path}: rows are not sorted by event_time",
        }
    ]
