import datetime as dt
import fcntl
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import recorder.storage.compact as compact_module
from recorder.clock import ManualClock, day_start_ms
from recorder.errors import ConfigError, StorageError
from recorder.model import MiniTicker
from recorder.storage.compact import (
    METADATA_COMPACTED_FROM,
    CompactExitCode,
    CompactReport,
    CompactStep,
    DayStatus,
    PartitionOutcome,
    check_compacted,
    compact,
    day_deferral,
    exchange_directories,
    merge_parts,
    parse_before,
    resolve_leftovers,
    select_days,
    staging_dir,
    write_ahead_dates,
)
from recorder.storage.paths import PartitionKey, parse_data_file_name, partition_dir
from recorder.storage.schema import DATA_SCHEMA, build_wal_batch, data_columns
from recorder.storage.writer import DatasetWriter

DAY = dt.date(2024, 5, 1)
NEXT_DAY = DAY + dt.timedelta(days=1)
DAY_MS = day_start_ms(DAY)
GRACE_MS = 10_000
SYMBOLS = ("BTCUSDT", "币安人生USDT")

Row = tuple[Any, ...]
"""(date, symbol, event_time ms, close, open, high, low, volume, quote_volume, receive_time,
pair, contract_type), as a reader sees it."""


# -- building datasets with the real writer ---------------------------------------------------


def ticker(
    symbol: str, event_time: int, *, close: str | None = None, received_late_by_us: int = 0
) -> MiniTicker:
    return MiniTicker(
        symbol=symbol,
        event_time=event_time,
        close=close if close is not None else f"{event_time % 100_000}.12345678",
        open="1.10",
        high="2",
        low="0.000000001",
        volume="6878775288",
        quote_volume="15.125",
        receive_time=event_time * 1000 + 500 + received_late_by_us,
        pair=None if symbol == SYMBOLS[1] else f"{symbol.removesuffix('USDT')}USDT",
        contract_type=None if symbol == SYMBOLS[1] else 1,
    )


def record(
    root: Path, instance_id: str, flushes: Sequence[Sequence[MiniTicker]], wall_us: int
) -> None:
    """Record ``flushes`` as ``instance_id`` does: one sealed part per partition per flush."""
    clock = ManualClock(monotonic=1.0, wall_us=wall_us)
    writer = DatasetWriter(
        root,
        instance_id=instance_id,
        max_file_age=60.0,
        max_file_bytes=1 << 30,
        day_grace_ms=GRACE_MS,
        clock=clock,
    )
    writer.open()
    for events in flushes:
        assert writer.write_ahead(list(events)) == []
        clock.advance(61.0)  # a segment rotation seals every open partition
        writer.seal_due()
    writer.close()


def redundant_pair(root: Path, day_ms: int = DAY_MS) -> None:
    """Two instances record the same symbols; alpha misses some events, beta others.

    alpha: three flushes, missing every 7th event; beta: two flushes, missing every 5th,
    receiving each event 3 ms later than alpha.
    """
    times = [day_ms + 3_600_000 + i * 2000 for i in range(30)]
    alpha = [
        [
            ticker(symbol, t)
            for t in times[start : start + 10]
            for symbol in SYMBOLS
            if (t // 2000) % 7
        ]
        for start in (0, 10, 20)
    ]
    beta = [
        [
            ticker(symbol, t, received_late_by_us=3000)
            for t in times[start : start + 15]
            for symbol in SYMBOLS
            if (t // 2000) % 5
        ]
        for start in (0, 15)
    ]
    record(root, "alpha", alpha, wall_us=(day_ms + 7_200_000) * 1000)
    record(root, "beta", beta, wall_us=(day_ms + 7_200_000) * 1000)


def read_rows(root: Path) -> Counter[Row]:
    """Every row, as pyarrow's dataset discovery (which skips '.' and '_' names) reads it."""
    if not any(root.glob("date=*/symbol=*/*.parquet")):
        return Counter()
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
    names = ["date", "symbol", *DATA_SCHEMA.names]
    return Counter(
        tuple(
            str(value) if name == "date" else value for name, value in zip(names, row, strict=True)
        )
        for row in zip(*(table[name].to_pylist() for name in names), strict=True)
    )


def distinct_events(rows: Counter[Row]) -> dict[tuple[Any, ...], Row]:
    """The row each event should keep after compaction: the earliest received."""
    kept: dict[tuple[Any, ...], Row] = {}
    receive_index = 2 + DATA_SCHEMA.names.index("receive_time")
    for row in sorted(rows, key=lambda row: row[receive_index]):
        kept.setdefault((row[0], row[1], row[2]), row)
    return kept


def live_files(root: Path, day: dt.date = DAY) -> dict[str, list[str]]:
    return {
        directory.name: sorted(path.name for path in directory.glob("*.parquet"))
        for directory in sorted((root / f"date={day.isoformat()}").glob("symbol=*"))
    }


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def clock_at(day: dt.date, after_midnight_ms: int) -> ManualClock:
    return ManualClock(wall_us=(day_start_ms(day) + after_midnight_ms) * 1000)


def run(root: Path, **kwargs: Any) -> CompactReport:
    kwargs.setdefault("clock", clock_at(NEXT_DAY, 3_600_000))
    kwargs.setdefault("day_grace_ms", GRACE_MS)
    return compact(root, **kwargs)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    redundant_pair(root)
    return root


# -- pure rules --------------------------------------------------------------------------------


def test_before_accepts_today_yesterday_and_a_date() -> None:
    today = dt.date(2024, 3, 1)
    assert parse_before("today", today) == today
    assert parse_before(" Yesterday ", today) == dt.date(2024, 2, 29)
    assert parse_before("2023-12-31", today) == dt.date(2023, 12, 31)
    for bad in ("tomorrow", "2024-02-30", "20240101", ""):
        with pytest.raises(ConfigError, match="--before"):
            parse_before(bad, today)


def test_days_are_selected_by_date_or_strictly_before() -> None:
    days = [dt.date(2024, 5, d) for d in (3, 1, 2)]
    assert select_days(days, only=None, before=dt.date(2024, 5, 3)) == [
        dt.date(2024, 5, 1),
        dt.date(2024, 5, 2),
    ]
    assert select_days(days, only=None, before=dt.date(2024, 5, 1)) == []
    assert select_days(days, only=dt.date(2024, 4, 1), before=dt.date(2024, 5, 3)) == [
        dt.date(2024, 4, 1)
    ]


def test_a_day_is_eligible_only_after_its_end_plus_grace_with_no_write_ahead_rows() -> None:
    end = day_start_ms(NEXT_DAY)
    assert day_deferral(NEXT_DAY, now_ms=end + 1, day_grace_ms=0) == (
        "not finished: it is today or later (UTC)"
    )
    assert day_deferral(NEXT_DAY + dt.timedelta(days=3), now_ms=end, day_grace_ms=0)
    in_grace = day_deferral(DAY, now_ms=end + GRACE_MS - 1, day_grace_ms=GRACE_MS)
    assert in_grace is not None
    assert "2024-05-02T00:00:10.000Z" in in_grace
    assert day_deferral(DAY, now_ms=end + GRACE_MS, day_grace_ms=GRACE_MS) is None
    held = day_deferral(DAY, now_ms=end + 86_400_000, day_grace_ms=0, wal_instances={"b", "a"})
    assert held is not None
    assert "instance a, b" in held


def table_of(events: Sequence[MiniTicker]) -> pa.Table:
    return pa.Table.from_batches([data_columns(build_wal_batch(events))])


def test_merge_sorts_and_keeps_the_earliest_received_copy_of_each_event() -> None:
    early = [ticker("BTCUSDT", t) for t in (3000, 1000, 5000)]
    late = [ticker("BTCUSDT", t, received_late_by_us=10) for t in (1000, 2000, 3000)]
    merged = merge_parts([table_of(late), table_of(early)])
    times = [round(t.timestamp() * 1000) for t in merged.table["event_time"].to_pylist()]
    assert times == [1000, 2000, 3000, 5000]
    received = [round(t.timestamp() * 1_000_000) for t in merged.table["receive_time"].to_pylist()]
    assert received == [1_000_500, 2_000_510, 3_000_500, 5_000_500]
    assert (merged.input_rows, merged.duplicates, merged.conflicts) == (6, 2, 0)
    assert merged.distinct_event_times == 4
    assert merged.table.schema.equals(DATA_SCHEMA, check_metadata=False)


def test_merge_drops_and_counts_rows_that_conflict_with_the_kept_one() -> None:
    kept = ticker("XUSDT", 1000, close="1.0")
    same_value_other_scale = ticker("XUSDT", 1000, close="1.00", received_late_by_us=1)
    other_close = ticker("XUSDT", 1000, close="1.1", received_late_by_us=2)
    other_pair = MiniTicker(**{**_fields(kept), "pair": "OTHER", "receive_time": 1_000_503})
    no_pair = MiniTicker(**{**_fields(kept), "pair": None, "receive_time": 1_000_504})
    merged = merge_parts([table_of([other_close, no_pair]), table_of([other_pair, kept])])
    merged_again = merge_parts([table_of([same_value_other_scale]), table_of([kept])])
    assert merged.table.num_rows == 1
    assert merged.table["close"].to_pylist() == [Decimal("1.0")]
    assert (merged.duplicates, merged.conflicts) == (0, 3)
    # Exact decimals compare by value: "1.00" is the same price as "1.0".
    assert (merged_again.duplicates, merged_again.conflicts) == (1, 0)


def _fields(event: MiniTicker) -> dict[str, Any]:
    return {name: getattr(event, name) for name in MiniTicker.__slots__}


def test_rows_whose_nullable_columns_are_both_null_are_duplicates() -> None:
    a = ticker(SYMBOLS[1], 1000)
    b = ticker(SYMBOLS[1], 1000, received_late_by_us=1)
    assert a.pair is None
    merged = merge_parts([table_of([a]), table_of([b])])
    assert (merged.duplicates, merged.conflicts) == (1, 0)


def test_merge_of_nothing_and_refusal_of_a_foreign_schema() -> None:
    empty = merge_parts([])
    assert empty.table.num_rows == 0
    assert empty.table.schema.equals(DATA_SCHEMA, check_metadata=False)
    with pytest.raises(ValueError, match="schema"):
        merge_parts([pa.table({"event_time": [1]})])


def test_a_compacted_file_that_differs_from_the_merge_is_rejected() -> None:
    merged = merge_parts([table_of([ticker("XUSDT", t) for t in (1000, 2000, 3000)])])
    check_compacted(merged.table, merged)
    changed = merged.table.set_column(
        1, "close", pa.array([Decimal(1), Decimal(2), Decimal(3)], DATA_SCHEMA.field("close").type)
    )
    with pytest.raises(StorageError, match="differ"):
        check_compacted(changed, merged)
    with pytest.raises(StorageError, match="rows"):
        check_compacted(merged.table.slice(1), merged)
    reversed_rows = merged.table.take([2, 1, 0])
    reversed_merge = compact_module.MergedPartition(reversed_rows, 3, 0, 0, 3)
    with pytest.raises(StorageError, match="strictly increasing"):
        check_compacted(reversed_rows, reversed_merge)


def test_the_staging_directory_is_a_hidden_sibling() -> None:
    live = Path("root/date=2024-05-01/symbol=BTCUSDT")
    assert staging_dir(live) == Path("root/date=2024-05-01/.symbol=BTCUSDT.compact")


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "in-a").touch()
    exchange_directories(tmp_path / "a", tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["in-a"]
    assert list((tmp_path / "a").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        exchange_directories(tmp_path / "a", tmp_path / "missing")


# -- compaction of datasets written by the recorder ---------------------------------------------


def test_each_partition_becomes_one_sorted_duplicate_free_file(dataset: Path) -> None:
    before = read_rows(dataset)
    parts = live_files(dataset)
    assert all(len(names) == 5 for names in parts.values())  # 3 alpha flushes + 2 beta

    report = run(dataset)

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


def test_a_second_run_changes_nothing(dataset: Path) -> None:
    run(dataset)
    files = snapshot(dataset)
    report = run(dataset)
    assert report.exit_code is CompactExitCode.OK
    assert {r.outcome for r in report.partitions} == {PartitionOutcome.ALREADY_COMPACTED}
    assert snapshot(dataset) == files
    assert report.render_text()[-1] == "OK: 2 partitions already compacted"


def test_a_dry_run_reports_and_changes_nothing(dataset: Path) -> None:
    files = snapshot(dataset)
    report = run(dataset, dry_run=True)
    assert snapshot(dataset) == files
    assert {r.outcome for r in report.partitions} == {PartitionOutcome.WOULD_COMPACT}
    assert all(r.duplicates > 0 and r.file_name is None for r in report.partitions)
    assert report.exit_code is CompactExitCode.OK
    assert report.render_text()[0].startswith("would compact date=2024-05-01/symbol=BTCUSDT: 5")


def test_a_late_part_next_to_a_compacted_file_is_merged_by_the_next_run(dataset: Path) -> None:
    run(dataset)
    late = [ticker("BTCUSDT", DAY_MS + 86_399_000)]
    record(dataset, "gamma", [late], wall_us=(DAY_MS + 90_000_000) * 1000)
    expected = distinct_events(read_rows(dataset))
    report = run(dataset)
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
    assert [r.outcome for r in run(root).partitions] == [PartitionOutcome.COMPACTED]
    assert read_rows(root) == before
    assert [r.outcome for r in run(root).partitions] == [PartitionOutcome.ALREADY_COMPACTED]


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
    report = run(root)
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

    during_grace = run(root, clock=clock_at(NEXT_DAY, GRACE_MS - 1), before=NEXT_DAY)
    assert [(d.date, d.status) for d in during_grace.days] == [(DAY, DayStatus.DEFERRED)]
    today = run(root, clock=clock_at(NEXT_DAY, GRACE_MS - 1), only=NEXT_DAY)
    assert [(d.date, d.status) for d in today.days] == [(NEXT_DAY, DayStatus.DEFERRED)]
    future = run(root, clock=clock_at(NEXT_DAY, GRACE_MS), before=dt.date(2030, 1, 1))
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

    cron = run(root, clock=clock, before=parse_before("yesterday", today))
    assert [(d.date, d.status) for d in cron.days] == [(DAY, DayStatus.DONE)]
    assert all(len(names) == 5 for names in live_files(root, NEXT_DAY).values())

    default = run(root, clock=clock)
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
    report = run(dataset, only=dt.date(2020, 1, 1))
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

    report = run(root)

    assert [d.status for d in report.days] == [DayStatus.DEFERRED]
    assert "write-ahead log of instance crashed" in report.days[0].reason
    assert report.exit_code is CompactExitCode.OK
    assert snapshot(root) == files
    crashed.close()  # as recovery would: the rows are published, the segment deleted
    assert write_ahead_dates(root) == {}
    assert [d.status for d in run(root).days] == [DayStatus.DONE]


def test_a_day_with_an_unreadable_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    root = tmp_path / "data"
    redundant_pair(root)
    redundant_pair(root, day_ms=day_start_ms(NEXT_DAY))
    victim = sorted((root / f"date={DAY}" / "symbol=BTCUSDT").glob("*.parquet"))[2]
    victim.write_bytes(victim.read_bytes()[:-100])
    day_files = {k: v for k, v in snapshot(root).items() if k.startswith(f"date={DAY}")}

    report = run(root, clock=clock_at(NEXT_DAY + dt.timedelta(days=1), GRACE_MS))

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
    report = run(dataset)
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

    report = run(dataset)

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
        with pytest.raises(StorageError, match="another `recorder compact` is running"):
            run(dataset)
    finally:
        os.close(fd)
    assert run(dataset).exit_code is CompactExitCode.OK


def test_a_missing_root_cannot_be_compacted(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        run(tmp_path / "nowhere")


def test_without_an_atomic_exchange_nothing_changes_and_the_run_stops(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A platform whose C library has no renameat2.
    monkeypatch.setattr(compact_module, "_renameat2", lambda: None)
    files = snapshot(dataset)
    report = run(dataset)
    assert report.exit_code is CompactExitCode.CANNOT_RUN
    assert report.fatal is not None
    assert "renameat2" in report.fatal
    assert len(report.partitions) == 1
    assert snapshot(dataset) == files


# -- interruptions ------------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for kill -9: no except clause of the code under test handles it."""


def crash_at(step: CompactStep, occurrence: int = 1) -> Callable[[CompactStep, PartitionKey], None]:
    seen = 0

    def hook(current: CompactStep, key: PartitionKey) -> None:
        nonlocal seen
        if current is step:
            seen += 1
            if seen == occurrence:
                raise Crash(f"{step} #{occurrence}")

    return hook


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
        run(dataset, on_step=crash_at(step, occurrence))

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

    report = run(dataset)

    assert report.exit_code is CompactExitCode.OK
    assert not report.problems
    assert bool(report.recovered) is (step is not CompactStep.DONE)
    assert read_rows(dataset) == expected
    assert all(len(names) == 1 for names in live_files(dataset).values())
    assert not list(dataset.rglob(".*"))


def test_a_staging_directory_holding_foreign_files_is_kept_and_reported(dataset: Path) -> None:
    live = partition_dir(dataset, DAY, "BTCUSDT")
    staging = staging_dir(live)
    staging.mkdir()
    (staging / "notes.txt").write_text("mine")
    report = run(dataset)
    assert report.problems
    assert "notes.txt" in report.problems[0]
    assert report.exit_code is CompactExitCode.FAILED
    by_symbol = {r.key.symbol: r.outcome for r in report.partitions}
    assert by_symbol == {"BTCUSDT": PartitionOutcome.FAILED, SYMBOLS[1]: PartitionOutcome.COMPACTED}
    assert (staging / "notes.txt").read_text() == "mine"
    assert len(live_files(dataset)["symbol=BTCUSDT"]) == 5


def test_leftovers_are_only_reported_in_a_dry_run(dataset: Path) -> None:
    with pytest.raises(Crash):
        run(dataset, on_step=crash_at(CompactStep.EXCHANGED))
    files = snapshot(dataset)
    done, problems = resolve_leftovers(dataset, dry_run=True)
    assert len(done) == 1
    assert done[0].startswith("would delete the old parts")
    assert not problems
    assert snapshot(dataset) == files
    assert run(dataset, dry_run=True).recovered == tuple(done)
    assert snapshot(dataset) == files


def test_a_part_published_during_compaction_is_kept_beside_the_new_file(dataset: Path) -> None:
    live = partition_dir(dataset, DAY, "BTCUSDT")
    late = [ticker("BTCUSDT", DAY_MS + 80_000_000)]

    def publish_late_part(step: CompactStep, key: PartitionKey) -> None:
        # A recorder seals a late event of the day just before the swap.
        if step is CompactStep.PREPARED and key.symbol == "BTCUSDT":
            record(dataset, "gamma", [late], wall_us=(DAY_MS + 90_000_000) * 1000)

    before = read_rows(dataset)
    report = run(dataset, on_step=publish_late_part)
    assert report.exit_code is CompactExitCode.OK
    names = sorted(path.name for path in live.glob("*.parquet"))
    assert len(names) == 2
    assert {parse_data_file_name(name).instance_id for name in names} == {"compact", "gamma"}  # type: ignore[union-attr]
    rows = read_rows(dataset)
    assert sum(rows.values()) == len(distinct_events(before)) + 1
    assert run(dataset).partitions[0].outcome is PartitionOutcome.COMPACTED


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
        report = run(root, on_step=scan_at_every_step)
    finally:
        stop.set()
        reader.join()
    assert report.exit_code is CompactExitCode.OK
    assert failures == []
    assert scans[CompactStep.EXCHANGED.value] == len(SYMBOLS)
    assert scans["complete"] > len(CompactStep) * len(SYMBOLS)
    assert read_rows(root) == expected
