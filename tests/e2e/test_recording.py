"""The daemon as an operator runs it, read back as an analyst reads it."""

import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import (
    READERS,
    SimulatorProcess,
    StartRecorder,
    StartSimulator,
    parquet_files,
    read_rows_with,
    wait_until,
)

from recorder.simulate import DEFAULT_SYMBOLS

pytestmark = pytest.mark.e2e

# Ten contracts covering every price profile (9-decimal prices, integer volumes, huge quote
# volumes), a non-ASCII symbol and a delivery contract with an underscore.
SYMBOLS = list(DEFAULT_SYMBOLS)
assert {"币安人生USDT", "BTCUSDT_260327"} <= set(SYMBOLS)
FAST = """
[storage]
flush_interval = "500ms"
[source]
backoff_initial = "100ms"
backoff_max = "1s"
"""


def delivered_count(simulator: SimulatorProcess) -> int:
    return sum(c["events_delivered"] for c in simulator.connections())


def test_every_delivered_event_is_recorded_once_and_exactly(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20", "--seed", "3")
    root = tmp_path / "data"
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=FAST)
    wait_until(lambda: delivered_count(simulator) >= 300, 30, "300 delivered events")
    simulator.freeze()

    started = time.monotonic()
    assert recorder.terminate() == 0
    assert time.monotonic() - started < 10

    expected = simulator.delivered_rows()
    assert len(expected) >= 300
    assert {row[0] for row in expected} == set(SYMBOLS)
    for reader in READERS:
        rows = read_rows_with(reader, root)
        assert Counter(rows) == Counter(expected), reader

    # One file per symbol, named uniquely, carrying its metadata; nothing else looks like data.
    files = parquet_files(root)
    assert len(files) == len(SYMBOLS)
    for file in files:
        assert file.parent.parent.name.startswith("date=")
        assert file.parent.name.startswith("symbol=")
        metadata = pq.read_metadata(file).metadata
        assert metadata[b"recorder.symbol"].decode() == file.parent.name.removeprefix("symbol=")
        assert b"recorder.schema_version" in metadata
        assert b"recorder.version" in metadata
        table = pq.read_table(file)
        times = table.column("event_time").to_pylist()
        assert times == sorted(times)


def test_partition_date_is_the_utc_date_of_the_event_across_midnight(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    # The event clock starts 100 s before a UTC midnight and runs 10x: the day rolls over. The
    # exchange pushes only changed tickers, so the seed is fixed and the lead long enough for
    # both symbols to have events on the finished day. The clock runs from the simulator's
    # start, so the lead (10 s of wall time) must also cover the recorder's start-up and first
    # connection on a loaded machine: with 3 s it failed at load averages of 6 to 9.
    midnight_ms = 1_798_761_600_000  # 2027-01-01T00:00:00Z
    simulator = start_simulator(
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--speed",
        "10",
        "--seed",
        "5",
        "--start-ms",
        str(midnight_ms - 100_000),
    )
    root = tmp_path / "data"
    recorder = start_recorder(
        root=root,
        url=simulator.url,
        symbols=["BTCUSDT", "ETHUSDT"],
        config=FAST.replace("[storage]", '[storage]\nday_grace = "1s"'),
    )
    # The finished day is sealed while the recorder runs, once E is past midnight + grace.
    wait_until(
        lambda: len(list(root.glob("date=2026-12-31/symbol=*/*.parquet"))) == 2,
        30,
        "the finished day's files",
    )
    simulator.freeze()
    assert recorder.terminate() == 0

    import duckdb  # noqa: PLC0415

    rows = (
        duckdb.connect()
        .execute(
            "SELECT CAST(date AS VARCHAR), epoch_ms(event_time) FROM "
            "read_parquet(?, hive_partitioning = true)",
            [f"{root}/**/*.parquet"],
        )
        .fetchall()
    )
    assert {date for date, _ in rows} == {"2026-12-31", "2027-01-01"}
    for date, event_ms in rows:
        assert (date == "2027-01-01") == (event_ms >= midnight_ms)
    expected = simulator.delivered_rows()
    assert sorted(r[:2] for r in read_rows_with("pyarrow", root)) == sorted(r[:2] for r in expected)


def test_sigkill_loses_nothing_flushed_and_shows_no_partial_file(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", ",".join(SYMBOLS), "--speed", "20", "--seed", "5")
    root = tmp_path / "data"
    # Small files (size seals every few hundred rows) so that publication happens while we watch.
    config = FAST.replace("[storage]", '[storage]\nmax_file_bytes = "20kB"')
    recorder = start_recorder(root=root, url=simulator.url, symbols=SYMBOLS, config=config)

    unreadable: list[str] = []
    watching = threading.Event()
    watching.set()

    def watch_files() -> None:
        # A reader racing the recorder must never see a partial or corrupt file.
        while watching.is_set():
            for file in parquet_files(root):
                try:
                    pq.read_table(file)
                except FileNotFoundError:
                    continue
                except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                    unreadable.append(f"{file}: {exc!r}")
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_files)
    watcher.start()
    try:
        wait_until(lambda: delivered_count(simulator) >= 400, 30, "400 delivered events")
        durable_before_kill = simulator.delivered_rows()
        recorder.wait_until_caught_up(simulator, durable=True)
        recorder.kill()
        time.sleep(0.3)  # the reader goes on racing the crashed recorder's leftovers
    finally:
        watching.clear()
        watcher.join()
    assert unreadable == []
    # Nothing that ends in .parquet outside the partitions, even mid-crash.
    for file in parquet_files(root):
        assert file.relative_to(root).parts[0].startswith("date=")

    # Restart: recovery publishes what the killed process had made durable.
    simulator.freeze()
    restarted = start_recorder(
        root=root, url=simulator.url, symbols=SYMBOLS, config=config, name="restarted"
    )
    started = restarted.wait_for_log("recorder started")
    assert started["rows_recovered"] > 0
    assert restarted.terminate() == 0

    rows = read_rows_with("duckdb", root)
    counts = Counter(rows)
    assert [row for row, n in counts.items() if n > 1] == []
    missing = set(durable_before_kill) - set(rows)
    assert missing == set()
    assert set(rows) <= set(simulator.delivered_rows())


def test_planned_handover_at_the_lifetime_loses_and_duplicates_nothing(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    # The exchange closes every connection after 3 s; the recorder hands over after 2 s.
    simulator = start_simulator(
        "--symbols", "BTCUSDT,ETHUSDT,币安人生USDT", "--speed", "10", "--lifetime", "3s"
    )
    root = tmp_path / "data"
    config = FAST + 'connection_lifetime = "2s"\nhandover_timeout = "900ms"\n'
    recorder = start_recorder(
        root=root, url=simulator.url, symbols=["BTCUSDT", "ETHUSDT", "币安人生USDT"], config=config
    )
    wait_until(lambda: len(recorder.logged("planned handover")) >= 4, 30, "four handovers")
    simulator.freeze()
    assert recorder.terminate() == 0

    assert recorder.logged("connection lost") == []  # no unplanned end: every close was planned
    expected = simulator.delivered_rows()
    rows = read_rows_with("pandas", root)
    assert len(rows) == len(set(rows))
    assert set(rows) == set(expected)
    # Every event generated while the recorder was connected was delivered to some connection.
    events = simulator.events()
    delivered_ticks = [e["tick"] for e in events if e["delivered_to"]]
    first, last = min(delivered_ticks), max(delivered_ticks)
    generated = [e for e in events if first <= e["tick"] <= last]
    assert all(e["delivered_to"] for e in generated)


def test_files_rotate_by_age_and_the_write_ahead_log_does_not_grow(
    tmp_path: Path, start_simulator: StartSimulator, start_recorder: StartRecorder
) -> None:
    simulator = start_simulator("--symbols", "BTCUSDT,ETHUSDT", "--speed", "20")
    root = tmp_path / "data"
    config = FAST.replace("[storage]", '[storage]\nmax_file_age = "1s"')
    recorder = start_recorder(
        root=root, url=simulator.url, symbols=["BTCUSDT", "ETHUSDT"], config=config
    )
    wait_until(lambda: len(parquet_files(root)) >= 8, 30, "four rotations")
    segments = list((root / "_wal").rglob("*.wal"))
    assert 1 <= len(segments) <= 2  # the current segment (and one being retired)
    simulator.freeze()
    assert recorder.terminate() == 0
    assert not list((root / "_wal").rglob("*.wal"))
    rows = read_rows_with("polars", root)
    assert Counter(rows) == Counter(simulator.delivered_rows())
    per_symbol = Counter(file.parent.name for file in parquet_files(root))
    assert min(per_symbol.values()) >= 4
