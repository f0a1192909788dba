"""Compaction of datasets the recorder wrote: merged, deferred, refused, locked, stopped."""

import datetime as dt
import fcntl
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from compact_support import (
    DAY,
    DAY_MS,
    GRACE_MS,
    NEXT_DAY,
    SYMBOLS,
    clock_at,
    distinct_events,
    live_files,
    read_rows,
    record,
    redundant_dataset,
    redundant_pair,
    run_compact,
    snapshot,
    ticker,
)

import recorder.storage.compact.swap as swap_module
from recorder.clock import ManualClock, day_start_ms
from recorder.errors import StorageError
from recorder.storage.compact.merge import METADATA_COMPACTED_FROM
from recorder.storage.compact.report import CompactExitCode, DayStatus, PartitionOutcome
from recorder.storage.compact.selection import parse_before, write_ahead_dates
from recorder.storage.paths import parse_data_file_name
from recorder.storage.writer import DatasetWriter


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return redundant_dataset(tmp_path)


def test_each_partition_becomes_one_sorted_duplicate_free_file(dataset: Path) -> None:
    before = read_rows(dataset)
    parts = live_files(dataset)
    assert all(len(names) == 5 for names in parts.values())  # 3 alpha flushes + 2 beta

    report = run_compact(dataset)

    assert report.exit_code is CompactExitCode.OK
    assert [day.status for day in report.days] == [DayStatus.DONE]
    results = report.partitions
    assert {r.outcome for r in results} == {PartitionOutcome.COMPACTED}
    expected = distinct_events(before)
    after = read_rows(dataset)
    assert after == Counter(expected.values())
    assert sum(r.input_rows for r in results) == sum(before.values())
    assert sum(r.rows for r in results) == len(expected)
    assert sum(r.duplicates for r in results) == sum(before.values()) - len(expected) > 0
    assert sum(r.conflicts for r in results) == 0
    for symbol_dir, names in live_files(dataset).items():
        assert len(names) == 1
        assert names == [r.file_name for r in results if f"symbol={r.key.symbol}" == symbol_dir]
        parsed = parse_data_file_name(names[0])
        assert parsed is not None
        assert parsed.instance_id == "compact"
        path = dataset / f"date={DAY}" / symbol_dir / names[0]
        metadata = pq.read_metadata(path).metadata
        assert metadata[METADATA_COMPACTED_FROM.encode()] == b"5"
        assert metadata[b"recorder.symbol"].decode() == symbol_dir.removeprefix("symbol=")
        assert metadata[b"recorder.date"] == str(DAY).encode()
        assert b"recorder.schema_version" in metadata
        assert b"recorder.version" in metadata
        assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
        times = pq.read_table(path)["event_time"].to_pylist()
        assert times == sorted(set(times))
    assert not list(dataset.rglob(".*"))  # no staging directory, manifest or temp file left
    assert not (dataset / "_compact").exists()


def test_a_second_run_changes_nothing(dataset: Path) -> None:
    run_compact(dataset)
    files = snapshot(dataset)
    report = run_compact(dataset)
    assert report.exit_code is CompactExitCode.OK
    assert {r.outcome for r in report.partitions} == {PartitionOutcome.ALREADY_COMPACTED}
    assert snapshot(dataset) == files
    assert report.render_text()[-1] == "OK: 2 partitions already compacted"


def test_a_dry_run_reports_and_changes_nothing(dataset: Path) -> None:
    files = snapshot(dataset)
    report = run_compact(dataset, dry_run=True)
    assert snapshot(dataset) == files
    assert {r.outcome for r in report.partitions} == {PartitionOutcome.WOULD_COMPACT}
    assert all(r.duplicates > 0 and r.file_name is None for r in report.partitions)
    assert report.exit_code is CompactExitCode.OK
    assert report.render_text()[0].startswith("would compact date=2024-05-01/symbol=BTCUSDT: 5")


def test_a_late_part_next_to_a_compacted_file_is_merged_by_the_next_run(dataset: Path) -> None:
    run_compact(dataset)
    late = [ticker("BTCUSDT", DAY_MS + 86_399_000)]
    record(dataset, "gamma", [late], wall_us=(DAY_MS + 90_000_000) * 1000)
    expected = distinct_events(read_rows(dataset))
    report = run_compact(dataset)
    by_symbol = {r.key.symbol: r for r in report.partitions}
    assert by_symbol["BTCUSDT"].outcome is PartitionOutcome.COMPACTED
    assert by_symbol["BTCUSDT"].parts == 2
    assert by_symbol[SYMBOLS[1]].outcome is PartitionOutcome.ALREADY_COMPACTED
    assert read_rows(dataset) == Counter(expected.values())
    (name,) = live_files(dataset)["symbol=BTCUSDT"]
    path = dataset / f"date={DAY}" / "symbol=BTCUSDT" / name
    assert pq.read_metadata(path).metadata[METADATA_COMPACTED_FROM.encode()] == b"2"


def test_a_single_part_is_rewritten_once_as_a_compacted_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    record(root, "solo", [[ticker("BTCUSDT", DAY_MS + 1000)]], wall_us=DAY_MS * 1000)
    before = read_rows(root)
    assert [r.outcome for r in run_compact(root).partitions] == [PartitionOutcome.COMPACTED]
    assert read_rows(root) == before
    assert [r.outcome for r in run_compact(root).partitions] == [PartitionOutcome.ALREADY_COMPACTED]


def test_conflicting_copies_of_an_event_keep_the_first_received_and_are_reported(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    event_ms = DAY_MS + 5000
    record(root, "alpha", [[ticker("BTCUSDT", event_ms, close="10")]], wall_us=DAY_MS * 1000)
    record(
        root,
        "beta",
        [[ticker("BTCUSDT", event_ms, close="11", received_late_by_us=1)]],
        wall_us=DAY_MS * 1000,
    )
    report = run_compact(root)
    (result,) = report.partitions
    assert (result.rows, result.duplicates, result.conflicts) == (1, 0, 1)
    assert "1 conflicting rows dropped" in report.render_text()[0]
    (row,) = read_rows(root)
    assert row[3] == Decimal(10)


def test_days_not_finished_or_within_grace_are_deferred_untouched(tmp_path: Path) -> None:
    root = tmp_path / "data"
    redundant_pair(root)
    redundant_pair(root, day_ms=day_start_ms(NEXT_DAY))
    files = snapshot(root)

    during_grace = run_compact(root, clock=clock_at(NEXT_DAY, GRACE_MS - 1), before=NEXT_DAY)
    assert [(d.date, d.status) for d in during_grace.days] == [(DAY, DayStatus.DEFERRED)]
    today = run_compact(root, clock=clock_at(NEXT_DAY, GRACE_MS - 1), only=NEXT_DAY)
    assert [(d.date, d.status) for d in today.days] == [(NEXT_DAY, DayStatus.DEFERRED)]
    future = run_compact(root, clock=clock_at(NEXT_DAY, GRACE_MS), before=dt.date(2030, 1, 1))
    assert [d.status for d in future.days] == [DayStatus.DONE, DayStatus.DEFERRED]
    assert future.exit_code is CompactExitCode.OK
    assert "deferred 2024-05-02: not finished" in "\n".join(future.render_text())
    assert live_files(root, NEXT_DAY) == {
        name: sorted(Path(p).name for p in files if f"date={NEXT_DAY}/{name}/" in p)
        for name in ("symbol=BTCUSDT", f"symbol={SYMBOLS[1]}")
    }


def test_the_default_takes_every_day_before_today_and_yesterday_can_wait(tmp_path: Path) -> None:
    root = tmp_path / "data"
    redundant_pair(root)
    redundant_pair(root, day_ms=day_start_ms(NEXT_DAY))
    today = NEXT_DAY + dt.timedelta(days=1)
    clock = clock_at(today, GRACE_MS)

    cron = run_compact(root, clock=clock, before=parse_before("yesterday", today))
    assert [(d.date, d.status) for d in cron.days] == [(DAY, DayStatus.DONE)]
    assert all(len(names) == 5 for names in live_files(root, NEXT_DAY).values())

    default = run_compact(root, clock=clock)
    assert [(d.date, d.status) for d in default.days] == [
        (DAY, DayStatus.DONE),
        (NEXT_DAY, DayStatus.DONE),
    ]
    assert [r.outcome for r in default.days[0].partitions] == [
        PartitionOutcome.ALREADY_COMPACTED
    ] * len(SYMBOLS)
    assert [r.outcome for r in default.days[1].partitions] == [PartitionOutcome.COMPACTED] * len(
        SYMBOLS
    )


def test_a_day_asked_for_without_data_is_reported_as_such(dataset: Path) -> None:
    report = run_compact(dataset, only=dt.date(2020, 1, 1))
    assert [(d.date, d.status) for d in report.days] == [(dt.date(2020, 1, 1), DayStatus.NO_DATA)]
    assert report.exit_code is CompactExitCode.OK
    assert report.render_text() == [
        "without data 2020-01-01: no partition with data files",
        "OK: 1 day without data",
    ]


def test_a_day_with_rows_in_a_write_ahead_log_waits_for_recovery(tmp_path: Path) -> None:
    root = tmp_path / "data"
    redundant_pair(root)
    clock = ManualClock(monotonic=1.0, wall_us=DAY_MS * 1000)
    crashed = DatasetWriter(
        root,
        instance_id="crashed",
        max_file_age=3600.0,
        max_file_bytes=1 << 30,
        day_grace_ms=GRACE_MS,
        clock=clock,
    )
    crashed.open()
    crashed.write_ahead([ticker("BTCUSDT", DAY_MS + 10)])
    assert write_ahead_dates(root) == {DAY: frozenset({"crashed"})}
    files = snapshot(root)

    report = run_compact(root)

    assert [d.status for d in report.days] == [DayStatus.DEFERRED]
    assert "write-ahead log of instance crashed" in report.days[0].reason
    assert report.exit_code is CompactExitCode.OK
    assert snapshot(root) == files
    crashed.close()  # as recovery would: the rows are published, the segment deleted
    assert write_ahead_dates(root) == {}
    assert [d.status for d in run_compact(root).days] == [DayStatus.DONE]


def test_a_day_with_an_unreadable_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "data"
    redundant_pair(root)
    redundant_pair(root, day_ms=day_start_ms(NEXT_DAY))
    victim = sorted((root / f"date={DAY}" / "symbol=BTCUSDT").glob("*.parquet"))[2]
    victim.write_bytes(victim.read_bytes()[:-100])
    day_files = {k: v for k, v in snapshot(root).items() if k.startswith(f"date={DAY}")}

    report = run_compact(root, clock=clock_at(NEXT_DAY + dt.timedelta(days=1), GRACE_MS))

    assert [d.status for d in report.days] == [DayStatus.REFUSED, DayStatus.DONE]
    assert victim.name in report.days[0].reason
    assert report.exit_code is CompactExitCode.CANNOT_RUN
    assert {k: v for k, v in snapshot(root).items() if k.startswith(f"date={DAY}")} == day_files
    assert all(len(names) == 1 for names in live_files(root, NEXT_DAY).values())
    assert report.to_document()["status"] == "cannot_run"


def test_a_file_with_a_foreign_schema_refuses_its_day(dataset: Path) -> None:
    stranger = dataset / f"date={DAY}" / "symbol=BTCUSDT" / "stranger.parquet"
    pq.write_table(pa.table({"event_time": [1]}), stranger)
    files = snapshot(dataset)
    report = run_compact(dataset)
    assert report.days[0].status is DayStatus.REFUSED
    assert "schema" in report.days[0].reason
    assert snapshot(dataset) == files


def test_damaged_data_pages_refuse_only_that_partition(dataset: Path) -> None:
    victim = sorted((dataset / f"date={DAY}" / "symbol=BTCUSDT").glob("*.parquet"))[0]
    content = bytearray(victim.read_bytes())
    # Overwrite the first data page (just after the 4-byte magic); the footer stays valid.
    content[4:200] = bytes(196)
    victim.write_bytes(bytes(content))
    partition = {k: v for k, v in snapshot(dataset).items() if "symbol=BTCUSDT" in k}

    report = run_compact(dataset)

    outcomes = {r.key.symbol: r.outcome for r in report.partitions}
    assert outcomes == {
        "BTCUSDT": PartitionOutcome.UNREADABLE,
        SYMBOLS[1]: PartitionOutcome.COMPACTED,
    }
    assert report.exit_code is CompactExitCode.CANNOT_RUN
    assert {k: v for k, v in snapshot(dataset).items() if "symbol=BTCUSDT" in k} == partition


def test_only_one_compaction_runs_at_a_time(dataset: Path) -> None:
    fd = os.open(dataset, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(
            StorageError, match="another `recorder compact` or `recorder migrate` is running"
        ):
            run_compact(dataset)
    finally:
        os.close(fd)
    assert run_compact(dataset).exit_code is CompactExitCode.OK


def test_a_missing_root_cannot_be_compacted(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        run_compact(tmp_path / "nowhere")


def test_without_an_atomic_exchange_nothing_changes_and_the_run_stops(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A platform whose C library has no renameat2.
    monkeypatch.setattr(swap_module, "_renameat2", lambda: None)
    files = snapshot(dataset)
    report = run_compact(dataset)
    assert report.exit_code is CompactExitCode.CANNOT_RUN
    assert report.fatal is not None
    assert "renameat2" in report.fatal
    assert len(report.partitions) == 1
    assert snapshot(dataset) == files
