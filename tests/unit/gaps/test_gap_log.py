import json
import re
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from gap_samples import DETECTED, T0, gap

from recorder.clock import MS_PER_DAY, event_date
from recorder.errors import StorageError, UnsafePathError
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.layout import gap_log_file
from recorder.gaps.log import GapLog
from recorder.gaps.records import gap_to_record
from recorder.gaps.scan import read_gaps, scan_gap_log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_round_trip(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    gaps = [gap(), gap("币安人生USDT", cause=GapCause.QUIET), gap("ETHUSDT", to_ms=T0 + 4000)]
    log.append(gaps)
    assert log.pending == 3
    assert log.flush() == 3
    assert log.pending == 0
    path = tmp_path / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    assert path == log.path_for(event_date(T0))
    assert json.loads(lines(path)[0]) == {
        "symbol": "BTCUSDT",
        "from": "2024-05-01T10:00:00.000Z",
        "to": "2024-05-01T10:00:10.000Z",
        "from_ms": T0,
        "to_ms": T0 + 10_000,
        "missed": 4,
        "cause": "disconnect",
        "detected_at": "2024-05-01T10:00:10.123456Z",
        "connection_id": "0.3",
        "instance_id": "host-a",
    }
    assert "币安人生USDT".encode() in path.read_bytes()
    back = read_gaps(tmp_path)
    assert sorted(back, key=lambda g: g.symbol) == sorted(
        (
            Gap(g.symbol, g.from_ms, g.to_ms, g.missed, g.cause, DETECTED, "0.3", "host-a")
            for g in gaps
        ),
        key=lambda g: g.symbol,
    )


def test_the_log_is_readable_by_duckdb(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap(), gap("ETHUSDT", to_ms=T0 + MS_PER_DAY)])
    log.flush()
    glob = str(tmp_path / "_gaps" / "**" / "*.jsonl")
    rows = (
        duckdb.connect()
        .execute(
            "select symbol, missed, cause, date from read_json(?, hive_partitioning = true) "
            "order by symbol",
            [glob],
        )
        .fetchall()
    )
    assert [(row[0], row[1], row[2], str(row[3])) for row in rows] == [
        ("BTCUSDT", 4, "disconnect", "2024-05-01"),
        ("ETHUSDT", 43199, "disconnect", "2024-05-02"),
    ]


def test_flush_with_nothing_pending_writes_nothing(tmp_path: Path) -> None:
    assert GapLog(tmp_path, "host-a").flush() == 0
    assert not (tmp_path / "_gaps").exists()


def test_re_append_is_idempotent(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap(), gap()])  # twice in one batch
    assert log.flush() == 1
    log.append([gap()])  # again later
    assert log.flush() == 0
    path = log.path_for(event_date(T0))
    before = path.read_bytes()
    # After a crash: a new process re-appends what it recovered from the write-ahead log.
    restarted = GapLog(tmp_path, "host-a")
    restarted.append([gap(), gap("ETHUSDT")])
    assert restarted.flush() == 1
    assert path.read_bytes().startswith(before)
    assert [g.symbol for g in read_gaps(tmp_path)] == ["BTCUSDT", "ETHUSDT"]


def test_keys_logged_by_another_instance_are_skipped(tmp_path: Path) -> None:
    other = GapLog(tmp_path, "host-b")
    other.append([gap()])
    other.flush()
    log = GapLog(tmp_path, "host-a")
    log.append([gap(), gap("ETHUSDT")])
    assert log.flush() == 1
    assert [(g.symbol, g.instance_id) for g in read_gaps(tmp_path)] == [
        ("BTCUSDT", "host-b"),
        ("ETHUSDT", "host-a"),
    ]


def test_a_recovered_gap_keeps_the_instance_that_detected_it(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap(instance_id="dead-host")])
    log.flush()
    [back] = read_gaps(tmp_path)
    assert back.instance_id == "dead-host"
    assert log.path_for(event_date(T0)).exists()


def test_one_directory_per_utc_day_of_the_gap_end(tmp_path: Path) -> None:
    midnight = T0 - 10 * 3_600_000 + MS_PER_DAY  # 2024-05-02T00:00:00Z
    log = GapLog(tmp_path, "host-a")
    log.append(
        [
            gap("A", midnight - 20_000, midnight - 10_000),
            gap("B", midnight - 6000, midnight + 4000),  # crosses midnight: filed on its end
            gap("C", midnight + 10_000, midnight + 20_000),
        ]
    )
    assert log.flush() == 3
    day1 = tmp_path / "_gaps" / "date=2024-05-01" / "host-a.jsonl"
    day2 = tmp_path / "_gaps" / "date=2024-05-02" / "host-a.jsonl"
    assert [json.loads(line)["symbol"] for line in lines(day1)] == ["A"]
    assert [json.loads(line)["symbol"] for line in lines(day2)] == ["B", "C"]


def test_torn_tail_of_own_file_is_cut_before_appending(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap()])
    log.flush()
    path = log.path_for(event_date(T0))
    good = path.read_bytes()
    torn_record = json.dumps(gap_to_record(gap("ETHUSDT"), "host-a")).encode()[:40]
    with path.open("ab") as stream:  # what a crash in the middle of a write leaves
        stream.write(torn_record)
    assert [line.line_number for line in scan_gap_log(tmp_path).torn] == [2]
    restarted = GapLog(tmp_path, "host-a")
    restarted.append([gap("ETHUSDT")])
    assert restarted.flush() == 1
    content = path.read_bytes()
    assert content.startswith(good)
    assert content.endswith(b"\n")
    assert content.count(b"\n") == 2
    scan = scan_gap_log(tmp_path)
    assert scan.torn == []
    assert [g.symbol for g in scan.gaps] == ["BTCUSDT", "ETHUSDT"]


def test_a_bad_complete_line_is_an_error_naming_the_place(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap()])
    log.flush()
    path = log.path_for(event_date(T0))
    with path.open("ab") as stream:
        stream.write(b"not json\n")
    with pytest.raises(StorageError, match=re.escape(f"{path}:2")):
        scan_gap_log(tmp_path)
    # The writer logs a warning and carries on: the daemon must keep logging gaps.
    log2 = GapLog(tmp_path, "host-a")
    log2.append([gap("ETHUSDT")])
    assert log2.flush() == 1


def test_append_failure_keeps_gaps_pending_and_retries(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    path = log.path_for(event_date(T0))
    path.mkdir(parents=True)  # a directory where the file should be: every open fails
    log.append([gap(), gap("ETHUSDT", T0 - MS_PER_DAY, T0 - MS_PER_DAY + 10_000)])
    with pytest.raises(StorageError, match=re.escape("host-a.jsonl")):
        log.flush()
    # The older day went first and is durable; the failed day is still pending.
    assert log.pending == 1
    assert [g.symbol for g in read_gaps(tmp_path, since_ms=T0 - MS_PER_DAY)] == ["ETHUSDT"]
    path.rmdir()
    assert log.flush() == 1
    assert log.pending == 0
    assert [g.symbol for g in read_gaps(tmp_path)] == ["ETHUSDT", "BTCUSDT"]


@pytest.fixture
def file_size_limit() -> Iterator[None]:
    """Restores the file size limit and SIGXFSZ after a test lowers them."""
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_cut_short_is_cut_back(tmp_path: Path, file_size_limit: None) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap()])
    log.flush()
    path = log.path_for(event_date(T0))
    good = path.read_bytes()
    log.append([gap("ETHUSDT"), gap("XRPUSDT")])
    # The file may grow by 30 bytes only: the write stops mid-line (a full disk does this).
    resource.setrlimit(
        resource.RLIMIT_FSIZE, (len(good) + 30, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
    )
    try:
        with pytest.raises(StorageError):
            log.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    assert path.read_bytes() == good
    assert log.pending == 2
    assert log.flush() == 2
    scan = scan_gap_log(tmp_path)
    assert scan.torn == []
    assert [g.symbol for g in scan.gaps] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]


def test_unsafe_instance_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        GapLog(tmp_path, "../escape")
    with pytest.raises(UnsafePathError):
        gap_log_file(tmp_path, event_date(T0), "a/b")


def test_nothing_in_the_log_ends_in_parquet(tmp_path: Path) -> None:
    log = GapLog(tmp_path, "host-a")
    log.append([gap()])
    log.flush()
    assert [p.suffix for p in tmp_path.rglob("*") if p.is_file()] == [".jsonl"]
