"""Compaction interrupted at every step, its leftovers, and readers while it swaps."""

import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from compact_support import (
    DAY,
    DAY_MS,
    SYMBOLS,
    Crash,
    Row,
    crash_at,
    distinct_events,
    live_files,
    read_rows,
    record,
    redundant_dataset,
    run_compact,
    snapshot,
    ticker,
)

from recorder.storage.compact.publish import CompactStep
from recorder.storage.compact.recovery import resolve_leftovers
from recorder.storage.compact.report import CompactExitCode, PartitionOutcome
from recorder.storage.compact.staging import STAGING_ROOT_NAME, staging_dir
from recorder.storage.paths import PartitionKey, parse_data_file_name, partition_dir


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return redundant_dataset(tmp_path)


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [
        (CompactStep.TEMP_WRITTEN, 1),
        (CompactStep.STAGED, 1),
        (CompactStep.PREPARED, 1),
        (CompactStep.EXCHANGED, 1),
        (CompactStep.PART_REMOVED, 1),
        (CompactStep.PART_REMOVED, 4),
        (CompactStep.CLEANED, 1),
        (CompactStep.DONE, 1),
        (CompactStep.EXCHANGED, 2),
    ],
)
def test_a_crash_at_any_step_leaves_a_complete_dataset_and_a_rerun_finishes(
    dataset: Path, step: CompactStep, occurrence: int
) -> None:
    before = read_rows(dataset)
    expected = Counter(distinct_events(before).values())
    old_names = live_files(dataset)

    with pytest.raises(Crash):
        run_compact(dataset, on_step=crash_at(step, occurrence))

    # Each partition is whole: all its old parts, or the new file alone.
    visible = read_rows(dataset)
    for symbol_dir, names in live_files(dataset).items():
        assert names == old_names[symbol_dir] or len(names) == 1
    by_partition: dict[tuple[Any, Any], Counter[Row]] = {}
    for row, count in visible.items():
        by_partition.setdefault(row[:2], Counter())[row] = count
    for key, rows in by_partition.items():
        old = Counter({r: c for r, c in before.items() if r[:2] == key})
        new = Counter({r: c for r, c in expected.items() if r[:2] == key})
        assert rows in (old, new)
    assert len(by_partition) == len(SYMBOLS)

    report = run_compact(dataset)

    assert report.exit_code is CompactExitCode.OK
    assert not report.problems
    assert bool(report.recovered) is (step is not CompactStep.DONE)
    assert read_rows(dataset) == expected
    assert all(len(names) == 1 for names in live_files(dataset).values())
    assert not list(dataset.rglob(".*"))
    assert not (dataset / STAGING_ROOT_NAME).exists()


def test_a_staging_directory_holding_foreign_files_is_kept_and_reported(dataset: Path) -> None:
    live = partition_dir(dataset, DAY, "BTCUSDT")
    staging = staging_dir(live)
    staging.mkdir(parents=True)
    (staging / "notes.txt").write_text("mine")
    report = run_compact(dataset)
    assert report.problems
    assert "notes.txt" in report.problems[0]
    assert report.exit_code is CompactExitCode.FAILED
    by_symbol = {r.key.symbol: r.outcome for r in report.partitions}
    assert by_symbol == {"BTCUSDT": PartitionOutcome.FAILED, SYMBOLS[1]: PartitionOutcome.COMPACTED}
    assert (staging / "notes.txt").read_text() == "mine"
    assert len(live_files(dataset)["symbol=BTCUSDT"]) == 5


def test_leftovers_are_only_reported_in_a_dry_run(dataset: Path) -> None:
    with pytest.raises(Crash):
        run_compact(dataset, on_step=crash_at(CompactStep.EXCHANGED))
    files = snapshot(dataset)
    done, problems = resolve_leftovers(dataset, dry_run=True)
    assert len(done) == 1
    assert done[0].startswith("would delete the old parts")
    assert not problems
    assert snapshot(dataset) == files
    assert run_compact(dataset, dry_run=True).recovered == tuple(done)
    assert snapshot(dataset) == files


def test_a_part_published_during_compaction_is_kept_beside_the_new_file(dataset: Path) -> None:
    live = partition_dir(dataset, DAY, "BTCUSDT")
    late = [ticker("BTCUSDT", DAY_MS + 80_000_000)]

    def publish_late_part(step: CompactStep, key: PartitionKey) -> None:
        # A recorder seals a late event of the day just before the swap.
        if step is CompactStep.PREPARED and key.symbol == "BTCUSDT":
            record(dataset, "gamma", [late], wall_us=(DAY_MS + 90_000_000) * 1000)

    before = read_rows(dataset)
    report = run_compact(dataset, on_step=publish_late_part)
    assert report.exit_code is CompactExitCode.OK
    names = sorted(path.name for path in live.glob("*.parquet"))
    assert len(names) == 2
    assert {parse_data_file_name(name).instance_id for name in names} == {"compact", "gamma"}  # type: ignore[union-attr]
    rows = read_rows(dataset)
    assert sum(rows.values()) == len(distinct_events(before)) + 1
    assert run_compact(dataset).partitions[0].outcome is PartitionOutcome.COMPACTED


def test_a_reader_never_sees_both_or_neither_while_partitions_are_swapped(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    # Several instances, no overlap: the dataset has no duplicate before or after.
    for number, instance in enumerate(("alpha", "beta", "gamma")):
        flushes = [
            [
                ticker(symbol, DAY_MS + (number * 200 + flush * 20 + i) * 1000)
                for i in range(20)
                for symbol in SYMBOLS
            ]
            for flush in range(4)
        ]
        record(root, instance, flushes, wall_us=DAY_MS * 1000)
    expected = read_rows(root)
    per_symbol = Counter(row[1] for row in expected)
    failures: list[str] = []
    scans = Counter[str]()
    stop = threading.Event()
    first_scan = threading.Event()

    old_names = {
        symbol: {path.name for path in partition_dir(root, DAY, symbol).glob("*.parquet")}
        for symbol in SYMBOLS
    }

    def scan(symbol: str) -> None:
        directory = partition_dir(root, DAY, symbol)
        try:
            names = {e.name for e in os.scandir(directory) if e.name.endswith(".parquet")}
        except FileNotFoundError:
            failures.append(f"{symbol}: the partition directory is missing")
            return
        if names != old_names[symbol] and (len(names) != 1 or names & old_names[symbol]):
            failures.append(f"{symbol}: listed {sorted(names)}")
        try:
            tables = [pq.read_table(directory / name) for name in names]
        except FileNotFoundError:
            # Listed just before the swap, opened after the old parts were deleted.
            scans["raced"] += 1
            return
        times = [t for table in tables for t in table["event_time"].to_pylist()]
        if len(times) != per_symbol[symbol] or len(set(times)) != len(times):
            failures.append(f"{symbol}: {len(times)} rows in {sorted(names)}")
        scans["complete"] += 1

    def keep_scanning() -> None:
        while not stop.is_set():
            for symbol in SYMBOLS:
                scan(symbol)
            first_scan.set()

    def scan_at_every_step(step: CompactStep, key: PartitionKey) -> None:
        scans[step.value] += 1
        for symbol in SYMBOLS:
            scan(symbol)

    reader = threading.Thread(target=keep_scanning)
    reader.start()
    try:
        assert first_scan.wait(10)
        report = run_compact(root, on_step=scan_at_every_step)
    finally:
        stop.set()
        reader.join()
    assert report.exit_code is CompactExitCode.OK
    assert failures == []
    assert scans[CompactStep.EXCHANGED.value] == len(SYMBOLS)
    assert scans["complete"] > len(CompactStep) * len(SYMBOLS)
    assert read_rows(root) == expected
