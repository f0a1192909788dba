"""Reading a root's gap log back: filters, torn last lines, several instances' records."""

from pathlib import Path

from gap_samples import DETECTED, T0, gap

from recorder.clock import MS_PER_DAY, event_date
from recorder.gaps.detector import Gap
from recorder.gaps.log import GapLog
from recorder.gaps.scan import distinct_gaps, read_gaps, scan_gap_log


def test_readers_skip_and_report_a_torn_last_line(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap()])
    log.flush()
    path = log.path_for(event_date(T0))
    with path.open("ab") as stream:
        stream.write(b'{"symbol": "ETHUSDT", "from_ms"')
    scan = scan_gap_log(tmp_path)
    assert [g.symbol for g in scan.gaps] == ["BTCUSDT"]
    [torn] = scan.torn
    assert (torn.path, torn.line_number) == (path, 2)
    assert scan.files == 1
    assert [g.symbol for g in read_gaps(tmp_path)] == ["BTCUSDT"]


def test_reading_filters_by_overlap_and_symbol(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    early = gap("BTCUSDT", T0, T0 + 10_000)
    late = gap("BTCUSDT", T0 + MS_PER_DAY, T0 + MS_PER_DAY + 10_000)
    eth = gap("ETHUSDT", T0 + 5000, T0 + 20_000)
    log.append([early, late, eth])
    log.flush()
    keys = [g.key for g in read_gaps(tmp_path)]
    assert keys == [early.key, eth.key, late.key]  # by end time
    assert [g.key for g in read_gaps(tmp_path, since_ms=T0 + 10_000)] == [eth.key, late.key]
    assert [g.key for g in read_gaps(tmp_path, until_ms=T0 + 5000)] == [early.key]
    assert [g.key for g in read_gaps(tmp_path, T0 + 9999, T0 + 5001)] == [early.key, eth.key]
    assert [g.key for g in read_gaps(tmp_path, symbol="ETHUSDT")] == [eth.key]
    assert read_gaps(tmp_path, since_ms=T0 + 2 * MS_PER_DAY) == []


def test_no_log_is_an_empty_log(tmp_path: Path) -> None:
    scan = scan_gap_log(tmp_path)
    assert (scan.gaps, scan.torn, scan.files) == ([], [], 0)


def test_distinct_gaps_keeps_the_first_detection() -> None:
    first = gap(instance_id="a")
    second = Gap(first.symbol, first.from_ms, first.to_ms, 4, first.cause, DETECTED - 1, None, "b")
    other = gap("ETHUSDT")
    assert distinct_gaps([first, other, second]) == [second, other]
