"""Compaction's pure rules: which days, how rows merge, the check, the staging name, the swap."""

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from compact_support import DAY, GRACE_MS, NEXT_DAY, SYMBOLS, ticker

from recorder.clock import day_start_ms
from recorder.errors import ConfigError, StorageError
from recorder.model import MiniTicker
from recorder.storage.compact.merge import MergedPartition, check_compacted, merge_parts
from recorder.storage.compact.selection import day_deferral, parse_before, select_days
from recorder.storage.compact.staging import staging_dir
from recorder.storage.compact.swap import exchange_directories
from recorder.storage.schema import DATA_SCHEMA, FILE_SCHEMA, build_wal_batch, data_columns


def test_before_accepts_today_yesterday_and_a_date() -> None:
    today = dt.date(2024, 3, 1)
    assert parse_before("today", today) == today
    assert parse_before(" Yesterday ", today) == dt.date(2024, 2, 29)
    assert parse_before("2023-12-31", today) == dt.date(2023, 12, 31)
    for bad in ("tomorrow", "2024-02-30", "20240101", ""):
        with pytest.raises(ConfigError, match=r"is not a day: expected 'today', 'yesterday'"):
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
    assert merged.table.schema.equals(FILE_SCHEMA, check_metadata=False)


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
    assert empty.table.schema.equals(FILE_SCHEMA, check_metadata=False)
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
    reversed_merge = MergedPartition(reversed_rows, 3, 0, 0, 3)
    with pytest.raises(StorageError, match="strictly increasing"):
        check_compacted(reversed_rows, reversed_merge)


def test_the_staging_directory_is_outside_the_partitions() -> None:
    live = Path("root/date=2024-05-01/symbol=BTCUSDT")
    assert staging_dir(live) == Path("root/_compact/date=2024-05-01/symbol=BTCUSDT")


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "in-a").touch()
    exchange_directories(tmp_path / "a", tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["in-a"]
    assert list((tmp_path / "a").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        exchange_directories(tmp_path / "a", tmp_path / "missing")
