from pathlib import Path

import pytest
from recorded_dataset import (
    BTC,
    ETH,
    HOUR_MS,
    MINUTE_MS,
    REPORT_SINCE,
    REPORT_UNTIL,
    T0,
    XRP,
    coverage_root,
    every,
    gap,
    log_gaps,
    write_data_file,
)

from recorder.errors import StorageError
from recorder.gaps.detector import GapCause
from recorder.reports.coverage import CoverageReport, HourCell, run_coverage

DISCONNECT, STALL = GapCause.DISCONNECT, GapCause.STALL


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coverage_root(tmp_path_factory.mktemp("coverage"))


@pytest.fixture(scope="module")
def report(root: Path) -> CoverageReport:
    return run_coverage(root, REPORT_SINCE, REPORT_UNTIL, 2000)


def cells(report: CoverageReport, symbol: str) -> tuple[HourCell, ...]:
    [found] = [s for s in report.symbols if s.symbol == symbol]
    return found.cells


def test_one_column_per_utc_hour_and_one_row_per_symbol(report: CoverageReport) -> None:
    assert report.hours == (T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS)
    assert [s.symbol for s in report.symbols] == [BTC, ETH, XRP]


def test_stream_and_backfilled_rows_are_counted_apart(report: CoverageReport) -> None:
    btc = cells(report, BTC)
    assert [c.received for c in btc] == [1500, 1800, 1800]
    assert [c.backfilled for c in btc] == [10, 0, 0]
    assert [c.expected for c in btc] == [1800, 1800, 1800]
    assert btc[0].coverage == pytest.approx(1500 / 1800)
    assert btc[1].coverage == 1.0


def test_a_resolved_gap_counts_once_however_many_instances_logged_it(
    report: CoverageReport,
) -> None:
    btc = cells(report, BTC)
    assert btc[0].resolved_missed == {DISCONNECT: 300}
    assert btc[0].open_missed == {}
    [symbol] = [s for s in report.symbols if s.symbol == BTC]
    assert (symbol.gaps, symbol.open_gaps, symbol.totals.still_open) == (1, 0, 0)


def test_a_gap_across_an_hour_counts_its_share_in_each(report: CoverageReport) -> None:
    eth = cells(report, ETH)
    assert [dict(c.open_missed) for c in eth] == [{}, {STALL: 150}, {STALL: 150}]
    assert [c.received for c in eth] == [0, 750, 1650]


def test_expected_starts_at_the_first_data_of_a_symbol(report: CoverageReport) -> None:
    # ETH is listed at 11:30: nothing is expected of it before, only half of hour 11.
    assert [c.expected for c in cells(report, ETH)] == [0, 900, 1800]
    assert cells(report, ETH)[0].coverage is None
    # XRP stops at 12:10 (its last event counts one interval) and is not blamed for the rest.
    assert [c.expected for c in cells(report, XRP)] == [0, 0, 300]


def test_a_file_without_a_source_column_holds_stream_rows(report: CoverageReport) -> None:
    assert [c.received for c in cells(report, XRP)] == [0, 0, 300]
    assert cells(report, XRP)[2].coverage == 1.0


def test_totals_and_the_worst_symbols(report: CoverageReport) -> None:
    totals = report.totals
    assert (totals.received, totals.backfilled, totals.expected) == (7800, 10, 8400)
    assert totals.missed_by_cause == {DISCONNECT: 300, STALL: 300}
    assert totals.resolved_missed == {DISCONNECT: 300}
    assert (report.gaps, report.open_gaps, totals.still_open, totals.missed) == (2, 1, 300, 600)
    assert totals.coverage == pytest.approx(7800 / 8400)
    assert [s.symbol for s in report.worst()] == [ETH, BTC, XRP]
    assert [s.symbol for s in report.worst(1)] == [ETH]


def test_a_window_inside_an_hour_clips_its_cells(root: Path) -> None:
    report = run_coverage(root, T0 + 15 * MINUTE_MS, T0 + 45 * MINUTE_MS, 2000)
    [btc] = report.symbols
    [cell] = btc.cells
    assert cell.hour_ms == T0
    # 10:15 to 10:30 and 10:40 to 10:45; the whole gap's 300 lies in 10:30 to 10:40.
    assert (cell.received, cell.expected) == (450 + 150, 900)
    assert cell.resolved_missed == {DISCONNECT: 300}
    assert cell.backfilled == 10


def test_a_gap_over_the_whole_window_expects_updates_without_data(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, [T0])
    long_gap = gap(BTC, T0, T0 + 3 * HOUR_MS, 5399, GapCause.RESTART)
    log_gaps(tmp_path, long_gap)
    report = run_coverage(tmp_path, T0 + HOUR_MS, T0 + 2 * HOUR_MS, 2000)
    [btc] = report.symbols
    [cell] = btc.cells
    assert (cell.received, cell.expected, cell.coverage) == (0, 1800, 0.0)
    assert cell.open_missed == {GapCause.RESTART: 1800}
    assert report.worst() == [btc]


def test_days_of_the_window_are_read_and_others_not(tmp_path: Path) -> None:
    day = 24 * HOUR_MS
    write_data_file(tmp_path, BTC, every(T0 + day - MINUTE_MS, T0 + day + MINUTE_MS))
    write_data_file(tmp_path, ETH, every(T0 + 3 * day, T0 + 3 * day + MINUTE_MS))
    report = run_coverage(tmp_path, T0 + day - HOUR_MS, T0 + day + HOUR_MS, 2000)
    [btc] = report.symbols
    assert (btc.totals.received, btc.totals.expected) == (60, 60)


def test_an_empty_root_is_an_empty_report(tmp_path: Path) -> None:
    report = run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000)
    assert report.symbols == ()
    assert report.totals.coverage is None
    assert report.worst() == []


def test_a_missing_root_or_a_broken_file_cannot_be_reported(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        run_coverage(tmp_path / "nowhere", T0, T0 + HOUR_MS, 2000)
    path = write_data_file(tmp_path, BTC, [T0])
    path.write_bytes(b"not parquet")
    with pytest.raises(StorageError, match="cannot read data file"):
        run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000)


def test_an_empty_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window is empty"):
        run_coverage(tmp_path, T0, T0, 2000)


def test_a_torn_last_line_of_the_gap_log_is_reported_and_skipped(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0, T0 + HOUR_MS))
    log_gaps(tmp_path, gap(BTC, T0, T0 + 10_000, 4, GapCause.STALL))
    [log_file] = (tmp_path / "_gaps").rglob("*.jsonl")
    with log_file.open("ab") as file:
        file.write(b'{"symbol": "BTC')
    report = run_coverage(tmp_path, T0, T0 + HOUR_MS, 2000)
    [torn] = report.torn_lines
    assert (torn.path, torn.line_number) == (log_file, 2)
    assert report.totals.missed_by_cause == {STALL: 4}
