"""Lifecycle edges as an operator meets them: stops during recovery, bad ids, restarts, retiring."""

import functools
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import (
    RECORDER,
    StartRecorder,
    StartSimulator,
    parquet_files,
    read_rows_with,
    wait_until,
)

pytestmark = pytest.mark.e2e

CONFIG = """
[storage]
flush_interval = "200ms"
"""
UNREACHABLE_URL = "ws://127.0.0.1:9/market"
"""Nothing listens there: a recorder stopped during recovery never gets to connect."""

BACKLOG_SYMBOLS = 100
BACKLOG_DAYS = 10
BACKLOG_TICKS = 5
# A recorder of instance "crashed" logs 1000 partitions of rows and dies before sealing any:
# recovering them takes many seconds (one fsynced file each).
BACKLOG = f"""
import datetime as dt, os, sys
from pathlib import Path
from recorder.clock import SystemClock, day_start_ms
from recorder.model import MiniTicker
from recorder.storage.writer import DatasetWriter

writer = DatasetWriter(
    Path(sys.argv[1]), instance_id="crashed", max_file_age=3600.0, max_file_bytes=1 << 30,
    day_grace_ms=5000, clock=SystemClock(),
)
writer.open()
first = day_start_ms(dt.date(2026, 3, 1))
for day in range({BACKLOG_DAYS}):
    times = [first + day * 86_400_000 + tick * 2000 for tick in range({BACKLOG_TICKS})]
    writer.write_ahead([
        MiniTicker(f"S{{n:03d}}USDT", t, "1.5", "1", "2", "0.5", "10", "15", t * 1000)
        for n in range({BACKLOG_SYMBOLS}) for t in times
    ])
os._exit(0)
"""


def environment() -> dict[str, str]:
    """The test's environment without any recorder setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}


def recorder_command(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``recorder`` command to its end; its exit code is the test's to check."""
    return subprocess.run(
        [*RECORDER, *args],
        check=False,
        capture_output=True,
        text=True,
        env=environment() if env is None else env,
        timeout=60,
    )


def rows(root: Path) -> Counter[tuple[str, int]]:
    """Every (symbol, E) of the dataset, read with pyarrow as an analyst would."""
    return Counter((row[0], row[1]) for row in read_rows_with("pyarrow", root))


def wal_segments(root: Path, instance_id: str) -> list[Path]:
    return sorted((root / "_wal" / instance_id).glob("*.wal"))


def test_sigterm_during_startup_recovery_stops_promptly_and_the_next_start_recovers_the_rest(
    tmp_path: Path, start_recorder: StartRecorder
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    subprocess.run([sys.executable, "-c", BACKLOG, str(root)], check=True, timeout=60)
    assert wal_segments(root, "crashed")
    partitions = BACKLOG_SYMBOLS * BACKLOG_DAYS

    first = start_recorder(root=root, url=UNREACHABLE_URL, symbols=["BTCUSDT"], config=CONFIG)
    wait_until(lambda: bool(parquet_files(root)), 30, "recovery to publish a first file")
    assert first.terminate(within=10) == 0  # recovering the rest would take many seconds
    [stopped] = first.logged(
        "recorder stopped during start-up recovery; the next start publishes the rest"
    )
    assert not first.logged("recorder started")  # it never went on to record
    published_by_first = len(parquet_files(root))
    assert 0 < published_by_first < partitions
    assert stopped["files_recovered"] == published_by_first
    assert wal_segments(root, "crashed")  # the rest stays in the log

    second = start_recorder(root=root, url=UNREACHABLE_URL, symbols=["BTCUSDT"], config=CONFIG)
    started = second.wait_for_log("recorder started", timeout=55)
    assert second.terminate() == 0
    assert started["files_recovered"] == partitions - published_by_first

    recorded = rows(root)
    expected_rows = partitions * BACKLOG_TICKS
    assert recorded.total() == expected_rows  # nothing lost
    assert len(recorded) == expected_rows  # nothing duplicated
    assert len(parquet_files(root)) == partitions
    assert wal_segments(root, "crashed") == []


@pytest.mark.parametrize("route", ["toml", "env", "flag", "flag-equals"])
def test_an_invalid_instance_id_is_a_configuration_error_by_every_route(
    tmp_path: Path, route: str
) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text('[service]\ninstance_id = "-a"\n' if route == "toml" else "")
    args = ["run", "-c", str(config), "--root", str(tmp_path / "data")]
    env = environment()
    if route == "env":
        env["RECORDER_SERVICE__INSTANCE_ID"] = "-a"
    elif route == "flag":
        args += ["--instance-id", "-a"]  # click takes "-a" as the value, not as an option
    elif route == "flag-equals":
        args += ["--instance-id=-a"]
    result = recorder_command(*args, env=env)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("recorder: configuration error: ")
    assert "service.instance_id = '-a' is not valid" in line
    assert not (tmp_path / "data").exists()


def test_three_restarts_without_an_instance_id_leave_one_set_of_files(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    root = tmp_path / "data"
    symbols = ["BTCUSDT", "ETHUSDT"]
    simulator = start_simulator("--symbols", ",".join(symbols), "--speed", "20")
    instance_ids = []
    for run in range(1, 4):
        recorder = start_recorder(root=root, url=simulator.url, symbols=symbols, config=CONFIG)
        instance_ids.append(recorder.wait_for_log("recorder started")["instance_id"])
        recorder.wait_for_log("ready")
        simulator.inject("garbage")
        wait_until(
            functools.partial(quarantined_at_least, root, run),
            15,
            f"run {run}'s garbage frame quarantined",
        )
        assert recorder.terminate() == 0

    [instance_id] = set(instance_ids)
    assert [p.name for p in (root / "_state").iterdir()] == [f"{instance_id}.json"]
    quarantine_files = list((root / "_quarantine").iterdir())
    assert {p.name.removesuffix(".jsonl")[11:] for p in quarantine_files} == {instance_id}
    gap_files = list((root / "_gaps").rglob("*.jsonl"))
    assert {p.stem for p in gap_files} == {instance_id}
    assert {p.name for p in (root / "_wal").iterdir()} <= {instance_id}
    assert all(f"-{instance_id}-" in p.name for p in parquet_files(root))
    restarts = [
        record
        for record in gap_log_records(root)
        if record["cause"] == "restart" and record["instance_id"] == instance_id
    ]
    assert {record["symbol"] for record in restarts} == set(symbols)  # appended to, not lost


def quarantined_at_least(root: Path, frames: int) -> bool:
    """Whether ``frames`` frames are quarantined so far, over every quarantine file."""
    lines = sum(
        len(path.read_text(encoding="utf-8").splitlines())
        for path in (root / "_quarantine").glob("*.jsonl")
    )
    return lines >= frames


def gap_log_records(root: Path) -> list[dict[str, object]]:
    """The gap log read with DuckDB, as docs/analyst.md shows."""
    import duckdb  # noqa: PLC0415

    relation = duckdb.connect().execute(
        "SELECT symbol, cause, instance_id FROM read_json(?, format = 'newline_delimited')",
        [f"{root}/_gaps/**/*.jsonl"],
    )
    return [{"symbol": s, "cause": c, "instance_id": i} for s, c, i in relation.fetchall()]


def test_check_after_retiring_an_instance_expects_only_the_others(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    root = tmp_path / "data"
    hour_ago_ms = (time.time_ns() // 1_000_000) - 3_600_000
    old_feed = start_simulator("--symbols", "XRPUSDT", "--start-ms", str(hour_ago_ms))
    old = start_recorder(
        root=root,
        url=old_feed.url,
        symbols=["XRPUSDT"],
        config=CONFIG + '[service]\ninstance_id = "old"\n',
        name="old",
    )
    old.wait_for_log("ready")
    assert old.terminate() == 0
    feed = start_simulator("--symbols", "BTCUSDT,ETHUSDT", "--speed", "20")
    new = start_recorder(
        root=root,
        url=feed.url,
        symbols=["BTCUSDT", "ETHUSDT"],
        config=CONFIG + '[service]\ninstance_id = "new"\n',
        name="new",
    )
    new.wait_for_log("ready")

    before = recorder_command("check", "--root", str(root))
    assert before.returncode == 1
    assert before.stdout.startswith("XRPUSDT: newest event ")  # the retired feed, stale

    running = recorder_command("retire", "--root", str(root), "--instance", "new")
    assert running.returncode == 1
    assert "instance new is running" in running.stderr
    unknown = recorder_command("retire", "--root", str(root), "--instance", "never")
    assert unknown.returncode == 1
    invalid = recorder_command("retire", "--root", str(root), "--instance", "-a")
    assert invalid.returncode == 2

    retired = recorder_command("retire", "--root", str(root), "--instance", "old")
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.startswith("retired old: state file deleted")

    after = recorder_command("check", "--root", str(root))
    assert after.returncode == 0, after.stdout
    assert after.stdout.startswith("OK: 2 symbols")
    assert new.terminate() == 0
    assert sorted(p.name for p in (root / "_state").iterdir()) == ["new.json"]
    # Retiring deletes no history: the old instance's data and gap log stay.
    assert "XRPUSDT" in {symbol for symbol, _ in rows(root)}
    assert (root / "_wal").exists()
    assert not (root / "_wal" / "old").exists()


def test_two_recorders_without_an_instance_id_on_one_root_do_not_collide(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    root = tmp_path / "data"
    simulator = start_simulator("--symbols", "BTCUSDT,ETHUSDT", "--speed", "20")
    first = start_recorder(
        root=root, url=simulator.url, symbols=["BTCUSDT"], config=CONFIG, name="first"
    )
    first_id = first.wait_for_log("recorder started")["instance_id"]
    second = start_recorder(
        root=root, url=simulator.url, symbols=["ETHUSDT"], config=CONFIG, name="second"
    )
    second_id = second.wait_for_log("recorder started")["instance_id"]
    second.wait_for_log("ready")
    first.wait_for_log("ready")

    assert second_id == f"{first_id}-2"  # the next id of the host's series
    assert first.terminate() == 0
    assert second.terminate() == 0
    assert {p.name for p in (root / "_state").iterdir()} == {
        f"{first_id}.json",
        f"{second_id}.json",
    }
    recorded = rows(root)
    assert {symbol for symbol, _ in recorded} == {"BTCUSDT", "ETHUSDT"}
    assert max(recorded.values()) == 1
