import csv
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.clock import ManualClock, event_date
from recorder.errors import ConfigError, StorageError
from recorder.gaps.detector import Gap, GapCause, GapDetector
from recorder.gaps.log import GapLog
from recorder.gaps.state import write_state
from recorder.model import MiniTicker
from recorder.reports import (
    CheckLimits,
    ExitCode,
    FindingKind,
    ProblemKind,
    VerifyReport,
    gap_totals,
    missed_in_window,
    newest_sealed_event_times,
    parse_time_bound,
    render_gaps_csv,
    render_gaps_json,
    render_gaps_table,
    run_check,
    run_verify,
)
from recorder.storage.schema import build_wal_batch, data_columns, parquet_options
from recorder.storage.writer import DatasetWriter

DAY_MS = 86_400_000
MINUTE_MS = 60_000
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
DAY = dt.date(2024, 5, 1)
NOW = T0 + 3_600_000  # the checks run at 11:00
BTC = "BTCUSDT"
ETH = "ETHUSDT"


def ticker(symbol: str, event_time: int) -> MiniTicker:
    return MiniTicker(symbol, event_time, "1.5", "1", "2", "0.5", "10", "15", event_time * 1000)


def write_data_file(
    root: Path,
    symbol: str,
    event_times: Sequence[int],
    *,
    day: dt.date | None = None,
    name: str = "part-1.parquet",
    metadata_symbol: str | None = None,
    metadata_day: dt.date | None = None,
) -> Path:
    """Write a sealed file as the writer does; rows in the order given (sort them yourself)."""
    day = day or event_date(event_times[0])
    directory = root / f"date={day.isoformat()}" / f"symbol={symbol}"
    directory.mkdir(parents=True, exist_ok=True)
    options = parquet_options(metadata_day or day, metadata_symbol or symbol)
    batch = data_columns(build_wal_batch([ticker(symbol, e) for e in event_times]))
    table = pa.Table.from_batches([batch]).replace_schema_metadata(options.schema.metadata)
    path = directory / name
    pq.write_table(table, path, **options.write_kwargs)
    return path


def log_gaps(root: Path, *gaps: Gap, instance_id: str = "host-a") -> None:
    log = GapLog(root, instance_id)
    log.append(gaps)
    log.flush()


def every(start_ms: int, end_ms: int, step_ms: int = 2000) -> list[int]:
    return list(range(start_ms, end_ms, step_ms))


def gap(symbol: str, from_ms: int, to_ms: int, missed: int, cause: GapCause) -> Gap:
    return Gap(symbol, from_ms, to_ms, missed, cause, to_ms * 1000, "0.1")


# -- times, totals, rendering ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("24h", NOW - DAY_MS),
        ("90m", NOW - 90 * MINUTE_MS),
        ("1h30m", NOW - 90 * MINUTE_MS),
        ("7d", NOW - 7 * DAY_MS),
        ("2024-05-01", T0 - 10 * 3_600_000),
        ("2024-05-01T10:00", T0),
        ("2024-05-01 10:00:00.250", T0 + 250),
        ("2024-05-01T10:00:00Z", T0),
        ("2024-05-01T12:00:00+02:00", T0),
    ],
)
def test_parse_time_bound(text: str, expected: int) -> None:
    assert parse_time_bound(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "3600", "2024", "yesterday", "2024-13-01", "2024-05-01T25"])
def test_parse_time_bound_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="is not a time"):
        parse_time_bound(text, NOW)


def test_missed_in_window_counts_the_share_inside() -> None:
    whole_day = gap(BTC, T0 - DAY_MS, T0, 43_199, GapCause.RESTART)
    assert missed_in_window(whole_day, T0 - DAY_MS, T0) == 43_199
    assert missed_in_window(whole_day, T0 - 3_600_000, NOW) == 1800
    assert missed_in_window(whole_day, T0, NOW) == 0
    assert missed_in_window(whole_day, T0 - 2 * DAY_MS, T0 - DAY_MS) == 0


def test_totals_count_a_gap_logged_by_two_instances_once() -> None:
    one = gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT)
    twin = Gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT, 7, "9.9", "twin")
    quiet = gap(ETH, T0, T0 + 6000, 2, GapCause.QUIET)
    totals = gap_totals([one, twin, quiet])
    assert (totals.gaps, totals.records, totals.missed) == (2, 3, 6)
    assert totals.by_cause[GapCause.DISCONNECT].missed == 4
    assert totals.by_cause[GapCause.STALL].gaps == 0


def test_table_rendering() -> None:
    gaps = [
        Gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT, T0 * 1000, "0.1", "host-a"),
        Gap("币安人生USDT", T0, T0 + 130_000, 64, GapCause.QUIET, T0 * 1000, None, "host-a"),
    ]
    lines = render_gaps_table(gaps).splitlines()
    assert lines[0].split() == [
        "SYMBOL", "FROM", "TO", "DURATION", "MISSED", "CAUSE", "INSTANCE", "CONNECTION"
    ]  # fmt: skip
    assert lines[1].split() == [
        BTC,
        "2024-05-01T10:00:00.000Z",
        "2024-05-01T10:00:10.000Z",
        "10s",
        "4",
        "disconnect",
        "host-a",
        "0.1",
    ]
    assert lines[2].split()[3:6] == ["2m10s", "64", "quiet"]
    assert lines[-1] == (
        "Total: 2 gaps, 68 missed updates: disconnect 1 gap/4 missed, quiet 1 gap/64 missed"
    )
    assert render_gaps_table([]).splitlines() == ["No gaps.", "Total: 0 gaps, 0 missed updates"]


def test_json_and_csv_rendering() -> None:
    gaps = [Gap(BTC, T0, T0 + 10_000, 4, GapCause.STALL, T0 * 1000, "0.1", "host-a")]
    [record] = json.loads(render_gaps_json(gaps))
    assert record["from"] == "2024-05-01T10:00:00.000Z"
    assert (record["missed"], record["cause"], record["instance_id"]) == (4, "stall", "host-a")
    assert json.loads(render_gaps_json([])) == []
    rows = list(csv.DictReader(io.StringIO(render_gaps_csv(gaps))))
    assert rows == [
        {
            "symbol": BTC,
            "from": "2024-05-01T10:00:00.000Z",
            "to": "2024-05-01T10:00:10.000Z",
            "from_ms": str(T0),
            "to_ms": str(T0 + 10_000),
            "missed": "4",
            "cause": "stall",
            "detected_at": "2024-05-01T10:00:00.000000Z",
            "connection_id": "0.1",
            "instance_id": "host-a",
        }
    ]


# -- check -----------------------------------------------------------------------------------


def limits(**overrides: object) -> CheckLimits:
    values: dict[str, object] = {"now_ms": NOW, "since_ms": NOW - 3_600_000}
    values.update(overrides)
    return CheckLimits(**values)  # type: ignore[arg-type]


def healthy_root(root: Path) -> Path:
    write_state(root, "host-a", {BTC: NOW - 2000, ETH: NOW - 30_000}, [BTC, ETH])
    return root


def test_check_healthy(tmp_path: Path) -> None:
    root = healthy_root(tmp_path)
    log_gaps(root, gap(ETH, NOW - 60_000, NOW - 30_000, 14, GapCause.QUIET))
    report = run_check(root, limits())
    assert report.exit_code is ExitCode.OK
    assert report.problems == ()
    assert [(h.symbol, h.age_ms, h.missed) for h in report.symbols] == [
        (BTC, 2000, 0),
        (ETH, 30_000, 0),
    ]
    [line] = report.render_text()
    assert line.startswith("OK: 2 symbols, 0 missed updates (disconnect, restart, stall) since")


def test_check_missed_updates_over_the_limit(tmp_path: Path) -> None:
    root = healthy_root(tmp_path)
    log_gaps(
        root,
        gap(BTC, NOW - 60_000, NOW - 50_000, 4, GapCause.DISCONNECT),
        gap(BTC, NOW - 40_000, NOW - 34_000, 2, GapCause.STALL),
        gap(ETH, NOW - 40_000, NOW - 30_000, 4, GapCause.QUIET),
    )
    report = run_check(root, limits())
    assert report.exit_code is ExitCode.PROBLEMS
    [problem] = report.problems
    assert (problem.kind, problem.symbol) == (ProblemKind.MISSED, BTC)
    assert problem.message == (
        "BTCUSDT: 6 missed updates since 2024-05-01T10:00:00.000Z (disconnect 4, stall 2), "
        "over the limit of 0 per symbol"
    )
    assert run_check(root, limits(max_missed=6)).exit_code is ExitCode.OK
    with_quiet = run_check(root, limits(max_missed=6, causes=frozenset(GapCause)))
    assert [p.symbol for p in with_quiet.problems] == []
    assert with_quiet.missed_total == 10
    total = run_check(root, limits(max_missed=6, max_missed_total=5))
    assert [p.kind for p in total.problems] == [ProblemKind.MISSED_TOTAL]
    assert run_check(root, limits(since_ms=NOW - 45_000, max_missed=2)).exit_code is ExitCode.OK


def test_check_counts_a_gap_logged_by_redundant_instances_once(tmp_path: Path) -> None:
    root = healthy_root(tmp_path)
    twin_gap = gap(BTC, NOW - 60_000, NOW - 50_000, 4, GapCause.DISCONNECT)
    log_gaps(root, twin_gap, instance_id="host-a")
    log_gaps(root, twin_gap, instance_id="host-b")
    report = run_check(root, limits())
    assert report.missed_total == 4


def test_check_stale_and_never_recorded_symbols(tmp_path: Path) -> None:
    write_state(tmp_path, "host-a", {BTC: NOW - 20 * MINUTE_MS}, [BTC, ETH])
    report = run_check(tmp_path, limits())
    assert [(p.kind, p.symbol) for p in report.problems] == [
        (ProblemKind.STALE, BTC),
        (ProblemKind.NEVER_RECORDED, ETH),
    ]
    assert report.problems[0].message == (
        "BTCUSDT: newest event 2024-05-01T10:40:00.000Z is 20m old, older than the limit of 15m"
    )
    assert run_check(tmp_path, limits(max_age_ms=30 * MINUTE_MS, symbols=(BTC,))).problems == ()


def test_check_newest_event_is_the_newest_of_state_and_sealed_data(tmp_path: Path) -> None:
    write_state(tmp_path, "old-id", {BTC: NOW - 50 * MINUTE_MS}, [BTC, ETH])
    write_data_file(tmp_path, BTC, every(NOW - 60 * MINUTE_MS, NOW - 58 * MINUTE_MS))
    write_data_file(tmp_path, ETH, every(NOW - 10 * MINUTE_MS, NOW - 5 * MINUTE_MS))
    write_data_file(tmp_path, ETH, every(T0 - DAY_MS, T0 - DAY_MS + 10_000))  # an older day
    report = run_check(tmp_path, limits())
    assert [(h.symbol, h.newest_event_ms) for h in report.symbols] == [
        (BTC, NOW - 50 * MINUTE_MS),
        (ETH, NOW - 5 * MINUTE_MS - 2000),
    ]
    assert [p.symbol for p in report.problems] == [BTC]


def test_newest_sealed_event_times_reads_the_newest_day_only(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, every(T0 - DAY_MS, T0 - DAY_MS + 10_000))
    write_data_file(tmp_path, BTC, every(T0, T0 + 10_000), name="a.parquet")
    write_data_file(tmp_path, BTC, every(T0 + 20_000, T0 + 30_000), name="b.parquet")
    # A broken file on an older day is never opened.
    (tmp_path / "date=2024-04-30" / "symbol=BTCUSDT" / "broken.parquet").write_bytes(b"PAR1")
    assert newest_sealed_event_times(tmp_path, [BTC, ETH, "../x"]) == {BTC: T0 + 28_000}


def test_check_cannot_check(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        run_check(tmp_path / "missing", limits())
    with pytest.raises(ConfigError, match="no symbols to check"):
        run_check(tmp_path, limits())
    root = healthy_root(tmp_path)
    path = write_data_file(root, BTC, every(NOW - 10_000, NOW))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StorageError, match=re.escape(str(path))):
        run_check(root, limits())
    path.unlink()
    bad_log = root / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    bad_log.parent.mkdir(parents=True)
    bad_log.write_text('{"symbol": "BTCUSDT"}\n')
    with pytest.raises(StorageError, match="bad gap log record"):
        run_check(root, limits())


def test_check_reports_a_torn_gap_log_line_without_failing(tmp_path: Path) -> None:
    root = healthy_root(tmp_path)
    torn = root / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    torn.parent.mkdir(parents=True)
    torn.write_text('{"symbol": "BTC')
    report = run_check(root, limits())
    assert report.exit_code is ExitCode.OK
    assert [line.path for line in report.torn_lines] == [torn]
    assert report.to_document()["warnings"] == [f"incomplete last line 1 of {torn} skipped"]


def test_check_document(tmp_path: Path) -> None:
    root = healthy_root(tmp_path)
    log_gaps(root, gap(BTC, NOW - 60_000, NOW - 50_000, 4, GapCause.DISCONNECT))
    document = run_check(root, limits()).to_document()
    assert document["status"] == "problems"
    assert document["exit_code"] == 1
    assert document["missed_total"] == 4
    assert document["symbols"] == [
        {
            "symbol": BTC,
            "newest_event": "2024-05-01T10:59:58.000Z",
            "newest_event_ms": NOW - 2000,
            "age_seconds": 2.0,
            "gaps": 1,
            "missed": 4,
            "missed_by_cause": {"disconnect": 4},
        },
        {
            "symbol": ETH,
            "newest_event": "2024-05-01T10:59:30.000Z",
            "newest_event_ms": NOW - 30_000,
            "age_seconds": 30.0,
            "gaps": 0,
            "missed": 0,
            "missed_by_cause": {},
        },
    ]
    assert document["problems"] == [
        {
            "kind": "missed",
            "symbol": BTC,
            "message": "BTCUSDT: 4 missed updates since 2024-05-01T10:00:00.000Z "
            "(disconnect 4), over the limit of 0 per symbol",
        }
    ]
    json.dumps(document)


# -- verify ----------------------------------------------------------------------------------


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
    write_data_file(tmp_path, BTC, every(T0 + DAY_MS, T0 + DAY_MS + 10_000))
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
