"""``recorder compact`` as cron runs it, on a dataset recorded by two redundant recorders."""

import contextlib
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from support import (
    READERS,
    RECORDER,
    RecorderProcess,
    Row,
    SimulatorProcess,
    StartRecorder,
    StartSimulator,
    read_rows_with,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "币安人生USDT", "BTCUSDT_260327"]
DAY = "2024-05-01"
START_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z: a finished day
# Many small parts: every recorder seals each partition every second.
CONFIG = """
[storage]
flush_interval = "200ms"
max_file_age = "1s"
[source]
backoff_initial = "100ms"
backoff_max = "300ms"
[service]
instance_id = "{instance}"
"""


def compact_json(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("compact", "--root", str(root), "--format", "json", *args)
    return result.returncode, json.loads(result.stdout)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def partition_files(root: Path) -> dict[str, list[str]]:
    return {
        directory.name: sorted(path.name for path in directory.glob("*.parquet"))
        for directory in sorted((root / f"date={DAY}").glob("symbol=*"))
    }


def rows_per_symbol(root: Path) -> Counter[str]:
    """Rows of each symbol as a reader that skips hidden directories sees them."""
    table = ds.dataset(root, partitioning="hive").to_table(columns=["symbol"])
    return Counter(table["symbol"].to_pylist())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """Two recorders on the same symbols, stopped cleanly; and every event delivered."""
    workdir = tmp_path_factory.mktemp("redundant")
    root = workdir / "data"
    simulator = SimulatorProcess(
        workdir / "simulator.log",
        "--symbols",
        ",".join(SYMBOLS),
        "--speed",
        "20",
        "--start-ms",
        str(START_MS),
    )
    recorders = [
        RecorderProcess(
            workdir,
            root=root,
            url=simulator.url,
            symbols=SYMBOLS,
            config=CONFIG.format(instance=instance),
            name=instance,
        )
        for instance in ("alpha", "beta")
    ]
    try:
        wait_until(
            lambda: sum(c["events_delivered"] for c in simulator.connections()) >= 240,
            30,
            "events delivered to both recorders",
        )
        simulator.freeze()
        assert [recorder.terminate() for recorder in recorders] == [0, 0]
        delivered = sorted(set(simulator.delivered_rows()))
    finally:
        for recorder in recorders:
            if recorder.alive():
                recorder.kill()
        simulator.stop()
    return root, delivered


@pytest.fixture
def dataset(recorded: tuple[Path, list[Row]], tmp_path: Path) -> tuple[Path, list[Row]]:
    """A private copy of the recorded dataset."""
    root, delivered = recorded
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    return copy, delivered


def test_redundant_parts_become_one_exact_file_per_symbol_day(
    dataset: tuple[Path, list[Row]],
) -> None:
    root, delivered = dataset
    before = Counter(read_rows_with("duckdb", root))
    assert set(before) == set(delivered)
    assert max(before.values()) == 2  # both recorders wrote most events
    parts = partition_files(root)
    assert all(len(names) > 2 for names in parts.values())

    code, report = compact_json(root)

    assert code == 0, report
    assert report["status"] == "ok"
    (day,) = report["days"]
    assert day["date"] == DAY
    assert day["status"] == "done"
    results = {p["symbol"]: p for p in day["partitions"]}
    assert set(results) == set(SYMBOLS)
    for symbol, result in results.items():
        assert result["outcome"] == "compacted"
        assert result["parts"] == len(parts[f"symbol={symbol}"])
        assert result["duplicates"] > 0
        assert result["conflicts"] == 0
    for reader in READERS:
        assert Counter(read_rows_with(reader, root)) == Counter(delivered), reader
    for symbol_dir, (name,) in partition_files(root).items():
        path = root / f"date={DAY}" / symbol_dir / name
        metadata = pq.read_metadata(path).metadata
        assert int(metadata[b"recorder.compacted_from"]) == len(parts[symbol_dir])
        assert metadata[b"recorder.symbol"].decode() == symbol_dir.removeprefix("symbol=")
        assert metadata[b"recorder.date"].decode() == DAY
    assert not [p for p in root.rglob("*.parquet") if "/." in str(p.relative_to(root))]
    verify = run_cli("verify", "--root", str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr

    files = snapshot(root)
    again = run_cli("compact", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "OK: 3 partitions already compacted"
    assert snapshot(root) == files


def test_a_dry_run_says_what_it_would_do_and_does_nothing(
    dataset: tuple[Path, list[Row]],
) -> None:
    root, _ = dataset
    files = snapshot(root)
    result = run_cli("compact", "--root", str(root), "--dry-run", "--date", DAY)
    assert result.returncode == 0, result.stderr
    # Off a terminal (cron), the summary line alone: nothing needed reading.
    assert result.stdout.splitlines() == ["OK: dry run, 3 partitions would compact"]
    assert snapshot(root) == files


def test_on_a_terminal_a_progress_bar_and_every_partition(
    dataset: tuple[Path, list[Row]],
) -> None:
    root, _ = dataset
    leader, follower = pty.openpty()
    # A terminal of 24 rows of 100 columns: a new pseudo-terminal has no size at all.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        process = subprocess.run(
            [*RECORDER, "compact", "--root", str(root), "--dry-run", "--date", DAY],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the terminal has no writer left
            while chunk := os.read(leader, 65536):
                drawn += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert process.returncode == 0
    assert "compact: 100%" in drawn.decode(errors="replace")
    assert "3/3" in drawn.decode(errors="replace")
    # A terminal gets the whole report: the stdout is a pipe here, the bar went to stderr.
    assert "OK: dry run, 3 partitions would compact" in process.stdout


def test_a_day_with_an_unreadable_file_is_refused_and_untouched(
    dataset: tuple[Path, list[Row]],
) -> None:
    root, _ = dataset
    victim = sorted((root / f"date={DAY}" / "symbol=BTCUSDT").glob("*.parquet"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    files = snapshot(root)

    result = run_cli("compact", "--root", str(root))

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"refused {DAY}: cannot read" in result.stdout
    assert victim.name in result.stdout
    assert snapshot(root) == files


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from recorder.clock import SystemClock
from recorder.storage.compact.publish import CompactStep
from recorder.storage.compact.run import compact

step, occurrence, seen = CompactStep(sys.argv[2]), int(sys.argv[3]), []

def kill_at(current, key):
    if current is step:
        seen.append(key)
        if len(seen) == occurrence:
            os.kill(os.getpid(), signal.SIGKILL)

compact(Path(sys.argv[1]), clock=SystemClock(), day_grace_ms=10_000, on_step=kill_at)
"""


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [("temp_written", 1), ("prepared", 2), ("exchanged", 1), ("part_removed", 3)],
)
def test_kill_9_at_any_step_leaves_whole_partitions_and_the_next_run_finishes(
    dataset: tuple[Path, list[Row]], step: str, occurrence: int
) -> None:
    root, delivered = dataset
    parts = partition_files(root)
    old_rows = rows_per_symbol(root)
    new_rows = Counter(row[0] for row in delivered)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(root), step, str(occurrence)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # Every partition is either all its old parts or the new file alone, and reads whole.
    for symbol_dir, names in partition_files(root).items():
        assert names == parts[symbol_dir] or len(names) == 1
    now_rows = rows_per_symbol(root)
    assert set(now_rows) == set(SYMBOLS)
    for symbol, count in now_rows.items():
        assert count in (old_rows[symbol], new_rows[symbol]), symbol

    code, report = compact_json(root)

    assert code == 0, report
    assert report["recovered"]
    for reader in READERS:
        assert Counter(read_rows_with(reader, root)) == Counter(delivered), reader
    assert all(len(names) == 1 for names in partition_files(root).values())
    assert not list(root.glob("date=*/.*"))
    assert not (root / "_compact").exists()


def test_a_day_still_in_a_running_recorders_log_is_deferred_until_it_stops(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator(
        "--symbols", "BTCUSDT", "--speed", "20", "--start-ms", str(START_MS)
    )
    root = tmp_path / "data"
    # Files are sealed by size, but the log keeps the rows until the hourly rotation.
    config = CONFIG.format(instance="live").replace('max_file_age = "1s"', 'max_file_bytes = "2kB"')
    recorder = start_recorder(root=root, url=simulator.url, symbols=["BTCUSDT"], config=config)
    wait_until(lambda: len(list(root.glob("date=*/symbol=*/*.parquet"))) >= 2, 30, "two files")
    # The data files only: the gap log may grow meanwhile (a loaded machine stalls a stream).
    files = {name: content for name, content in snapshot(root).items() if name.startswith("date=")}

    code, report = compact_json(root)

    assert code == 0, report
    (day,) = report["days"]
    assert day["status"] == "deferred"
    assert "write-ahead log of instance live" in day["reason"]
    assert {k: v for k, v in snapshot(root).items() if k in files} == files

    simulator.freeze()
    assert recorder.terminate() == 0
    expected = Counter(simulator.delivered_rows())
    code, report = compact_json(root)
    assert code == 0, report
    assert [p["outcome"] for p in report["days"][0]["partitions"]] == ["compacted"]
    assert Counter(read_rows_with("pyarrow", root)) == expected


def test_compaction_cannot_run_without_a_root_or_with_contradicting_options(
    tmp_path: Path,
) -> None:
    missing = run_cli("compact", "--root", str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    as_json = run_cli("compact", "--root", str(tmp_path / "missing"), "--format", "json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["status"] == "error"
    both = run_cli("compact", "--root", str(tmp_path), "--date", DAY, "--before", "today")
    assert both.returncode == 2
    assert "cannot be used together" in both.stderr
    bad = run_cli("compact", "--root", str(tmp_path), "--before", "someday")
    assert bad.returncode == 2
    assert "--before" in bad.stderr
