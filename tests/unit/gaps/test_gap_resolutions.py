"""Resolution records: appended beside the gap log, durable, idempotent, read back, counted."""

import datetime as dt
import json
from pathlib import Path

import pytest
from recorded_dataset import BTC, ETH, NOW, gap, healthy_state, log_gaps

from recorder.clock import event_date
from recorder.errors import StorageError
from recorder.gaps.detector import GapCause
from recorder.gaps.resolutions import (
    Resolution,
    append_resolutions,
    read_resolutions,
    resolution_file,
    resolved_dir,
)
from recorder.gaps.scan import read_gaps
from recorder.reports.check import CheckLimits, run_check
from recorder.reports.read import ExitCode

STALL = gap(BTC, NOW - 600_000, NOW - 300_000, 149, GapCause.STALL)
DROP = gap(ETH, NOW - 200_000, NOW - 100_000, 49, GapCause.DISCONNECT)


def resolved(key: tuple[str, int, int], rows: int = 4) -> Resolution:
    return Resolution(key, rows, "backfill", NOW * 1000, "backfill")


def test_resolutions_are_appended_once_and_read_back(tmp_path: Path) -> None:
    assert read_resolutions(tmp_path) == {}
    assert append_resolutions(tmp_path, "backfill", [resolved(STALL.key)]) == 1
    # A rerun (or another writer) resolving the same gap adds nothing.
    assert append_resolutions(tmp_path, "other", [resolved(STALL.key, 9)]) == 0
    assert append_resolutions(tmp_path, "backfill", [resolved(DROP.key)]) == 1
    found = read_resolutions(tmp_path)
    assert found == {STALL.key: resolved(STALL.key), DROP.key: resolved(DROP.key)}
    path = resolution_file(tmp_path, dt_of(STALL.to_ms), "backfill")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["rows"] for line in lines] == [4, 4]
    assert json.loads(lines[0])["from"] == "2024-05-01T10:50:00.000Z"


def dt_of(ms: int) -> dt.date:
    return event_date(ms)


def test_a_torn_last_line_is_skipped_then_cut_by_the_next_append(tmp_path: Path) -> None:
    append_resolutions(tmp_path, "backfill", [resolved(STALL.key)])
    path = resolution_file(tmp_path, dt_of(STALL.to_ms), "backfill")
    with path.open("ab") as stream:
        stream.write(b'{"symbol": "ETHUSDT", "from_ms"')
    assert set(read_resolutions(tmp_path)) == {STALL.key}
    append_resolutions(tmp_path, "backfill", [resolved(DROP.key)])
    assert set(read_resolutions(tmp_path)) == {STALL.key, DROP.key}
    assert path.read_bytes().endswith(b"}\n")


def test_a_bad_record_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = resolution_file(tmp_path, dt_of(STALL.to_ms), "backfill")
    path.parent.mkdir(parents=True)
    path.write_text('{"symbol": "BTCUSDT", "rows": "four"}\n')
    with pytest.raises(StorageError, match=r"backfill.jsonl:1"):
        read_resolutions(tmp_path)


def test_the_gap_log_stays_as_it_was_and_check_counts_open_gaps_only(tmp_path: Path) -> None:
    healthy_state(tmp_path)
    log_gaps(tmp_path, STALL, DROP)
    limits = CheckLimits(now_ms=NOW, since_ms=NOW - 3_600_000)
    assert run_check(tmp_path, limits).exit_code is ExitCode.PROBLEMS
    append_resolutions(tmp_path, "backfill", [resolved(STALL.key)])
    report = run_check(tmp_path, limits)
    assert [(h.symbol, h.missed) for h in report.symbols] == [(BTC, 0), (ETH, 49)]
    append_resolutions(tmp_path, "backfill", [resolved(DROP.key)])
    assert run_check(tmp_path, limits).exit_code is ExitCode.OK
    everything = CheckLimits(now_ms=NOW, since_ms=NOW - 3_600_000, include_resolved=True)
    assert run_check(tmp_path, everything).exit_code is ExitCode.PROBLEMS
    # Append-only: the gap records are all still there, beside the resolutions.
    assert {g.key for g in read_gaps(tmp_path)} == {STALL.key, DROP.key}
    assert not any(resolved_dir(tmp_path).rglob("*.parquet"))
