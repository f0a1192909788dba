"""Tests of :mod:`recorder.reports.check`: missed updates in the window, stale symbols."""

import json
import re
from pathlib import Path

import pytest
from recorded_dataset import (
    BTC,
    ETH,
    MINUTE_MS,
    NOW,
    T0,
    every,
    gap,
    log_gaps,
    write_data_file,
)

from recorder.clock import MS_PER_DAY
from recorder.errors import ConfigError, StorageError
from recorder.gaps.detector import GapCause
from recorder.gaps.state import write_state
from recorder.reports.check import CheckLimits, ProblemKind, missed_in_window, run_check
from recorder.reports.read import ExitCode


def test_missed_in_window_counts_the_share_inside() -> None:
    whole_day = gap(BTC, T0 - MS_PER_DAY, T0, 43_199, GapCause.RESTART)
    assert missed_in_window(whole_day, T0 - MS_PER_DAY, T0) == 43_199
    assert missed_in_window(whole_day, T0 - 3_600_000, NOW) == 1800
    assert missed_in_window(whole_day, T0, NOW) == 0
    assert missed_in_window(whole_day, T0 - 2 * MS_PER_DAY, T0 - MS_PER_DAY) == 0


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
    assert line.startswith(
        "OK: 2 symbols, 0 missed updates (disconnect, restart, stall, storage) since"
    )


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
    write_data_file(tmp_path, ETH, every(T0 - MS_PER_DAY, T0 - MS_PER_DAY + 10_000))  # an older day
    report = run_check(tmp_path, limits())
    assert [(h.symbol, h.newest_event_ms) for h in report.symbols] == [
        (BTC, NOW - 50 * MINUTE_MS),
        (ETH, NOW - 5 * MINUTE_MS - 2000),
    ]
    assert [p.symbol for p in report.problems] == [BTC]


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


def test_check_ignores_an_implausibly_future_event_time_and_says_so(tmp_path: Path) -> None:
    # A state written before the recorder quarantined far-future E: ten years ahead.
    poisoned = NOW + 10 * 365 * MS_PER_DAY
    write_state(tmp_path, "old-id", {BTC: poisoned, ETH: NOW - 2000}, [BTC, ETH])
    write_data_file(tmp_path, BTC, every(NOW - 30 * MINUTE_MS, NOW - 25 * MINUTE_MS))
    report = run_check(tmp_path, limits())
    assert [(p.kind, p.symbol) for p in report.problems] == [
        (ProblemKind.FUTURE, BTC),
        (ProblemKind.STALE, BTC),  # its newest plausible event, from the data, is 25 min old
    ]
    assert report.problems[0].message.startswith(
        "BTCUSDT: newest event time 2034-04-29T11:00:00.000Z is 3650d ahead of the check's clock;"
    )
    assert report.exit_code is ExitCode.PROBLEMS
    [btc] = [h for h in report.symbols if h.symbol == BTC]
    assert btc.newest_event_ms == NOW - 25 * MINUTE_MS - 2000
    # A clock a little ahead of the check's (within a day) still counts.
    write_state(tmp_path, "old-id", {BTC: NOW + 60_000, ETH: NOW - 2000}, [BTC, ETH])
    assert run_check(tmp_path, limits()).problems == ()
