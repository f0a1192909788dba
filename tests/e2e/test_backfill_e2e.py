"""``recorder backfill`` as a user runs it, after ``recorder run`` recorded an outage and a stall.

One recording for the whole module: ``recorder simulate`` at 60x the real pace (an hour in the
past, so that ``recorder check`` sees the gaps as history), ``recorder run`` through a dropped
connection whose reconnects are refused for a while and through a stall, stopped by SIGTERM.
Every backfill then runs on a copy of that root, against the same simulator, whose ledger is
the judge: a rebuilt minute equals the last event the simulator generated in it.
"""

import contextlib
import datetime as dt
import json
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from recorded_dataset import T0, write_data_file
from support import (
    READERS,
    RecorderProcess,
    SimulatorProcess,
    gap_records,
    parquet_files,
    read_rows_with,
    run_cli,
    sources_with,
    start_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

SYMBOLS = ["BTCUSDT", "ETHUSDT", "币安人生USDT"]
MINUTE = 60_000
FILLED_CAUSES = {"disconnect", "stall"}
CHECK_CAUSES = {"disconnect", "stall", "restart", "storage"}
FIELDS = {"close": "c", "open": "o", "high": "h", "low": "l", "volume": "v", "quote_volume": "q"}
CONFIG = """
[storage]
flush_interval = "200ms"
[source]
backoff_initial = "100ms"
backoff_max = "200ms"
stall_timeout = "2500ms"
handover_timeout = "1s"
"""
KLINES = "/fapi/v1/klines"

Key = tuple[str, int]
"""(symbol, open time of a minute)."""


def whole_minutes_inside(gap: dict[str, Any]) -> list[int]:
    """The minutes that open after the gap's first event and end before its last."""
    first = (int(gap["from_ms"]) // MINUTE + 1) * MINUTE
    return list(range(first, int(gap["to_ms"]) - MINUTE + 1, MINUTE))


def table_rows(root: Path) -> list[dict[str, Any]]:
    """Every row under ``root`` as pyarrow reads it, ``event_time`` in ms."""
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
    position = table.schema.get_field_index("event_time")
    table = table.set_column(position, "event_time", table["event_time"].cast(pa.int64()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def content(root: Path) -> list[tuple[Any, ...]]:
    """The dataset's rows, sorted, without ``receive_time`` (a rebuilt row's is when it ran)."""
    return sorted(
        (r["symbol"], r["event_time"], r["source"], *(str(r[c]) for c in FIELDS))
        for r in table_rows(root)
    )


def backfill(root: Path, rest_url: str, *args: str) -> Any:
    """``recorder backfill --root ROOT *args``, with the REST base from the environment."""
    return run_cli(
        "backfill", "--root", str(root), *args, env={"RECORDER_SOURCE__REST_URL": rest_url}
    )


@dataclass
class Recording:
    """The recorded root, its gap log and the simulator's truth, and the simulator still up."""

    simulator: SimulatorProcess
    directory: Path
    root: Path
    gaps: list[dict[str, Any]]
    truth: dict[Key, dict[str, Any]]

    def copy(self, name: str) -> Path:
        """A copy of the recorded root to backfill."""
        return Path(shutil.copytree(self.root, self.directory / name))

    def lost_minutes(self) -> set[Key]:
        """Every whole minute inside a logged disconnect or stall gap."""
        return {
            (str(gap["symbol"]), minute)
            for gap in self.gaps
            if gap["cause"] in FILLED_CAUSES
            for minute in whole_minutes_inside(gap)
        }

    def klines_requests(self) -> int:
        """Klines requests the simulator received so far."""
        return int(self.simulator.get("/_sim/status")["rest_requests"].get(KLINES, 0))


def logged_causes(root: Path) -> Counter[str]:
    """The causes of the gaps logged so far (a line being appended is not read yet)."""
    causes: Counter[str] = Counter()
    for path in (root / "_gaps").rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                causes[json.loads(line)["cause"]] += 1
    return causes


def record_an_outage_and_a_stall(simulator: SimulatorProcess, recorder: RecorderProcess) -> None:
    def logged(cause: str) -> bool:
        return logged_causes(recorder.root)[cause] >= len(SYMBOLS)

    wait_until(lambda: len(recorder.logged("connected")) == 1, 15, "a connection")
    simulator.wait_for_deliveries(SYMBOLS, each=3)
    # The connection drops and the next 25 handshakes are refused: minutes of simulated time.
    simulator.inject("refuse*25,drop")
    wait_until(lambda: logged("disconnect"), 20, "a disconnect gap of each symbol")
    # The connection stays open and delivers nothing until the recorder replaces it.
    simulator.inject("stall+10s")
    wait_until(lambda: logged("stall"), 20, "a stall gap of each symbol")
    assert recorder.terminate() == 0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    directory = tmp_path_factory.mktemp("backfill")
    start_ms = int(time.time() * 1000) - 3_600_000
    simulator = SimulatorProcess(
        directory / "simulator.log",
        *("--symbols", ",".join(SYMBOLS), "--speed", "60", "--seed", "5"),
        *("--start-ms", str(start_ms)),
    )
    try:
        root = directory / "recorded"
        recorder = RecorderProcess(
            directory, root=root, url=simulator.url, symbols=SYMBOLS, config=CONFIG
        )
        try:
            record_an_outage_and_a_stall(simulator, recorder)
        except BaseException:
            sys.stderr.write(f"--- recorder log (tail) ---\n{recorder.log_tail()}\n")
            raise
        finally:
            if recorder.alive():
                recorder.kill()
            recorder.close()
        truth: dict[Key, dict[str, Any]] = {}
        for event in simulator.events():
            payload = event["payload"]
            truth[(str(payload["s"]), int(payload["E"]) // MINUTE * MINUTE)] = payload
        yield Recording(simulator, directory, root, gap_records(root), truth)
    finally:
        simulator.stop()


@dataclass
class Backfilled:
    """A copy of the recording backfilled by one uninterrupted run (``--format json``)."""

    root: Path
    returncode: int
    stderr: str
    document: dict[str, Any]

    def filled(self) -> dict[tuple[str, int, int], int]:
        """The gaps it filled and the rows each got."""
        return {
            (gap["symbol"], gap["from_ms"], gap["to_ms"]): gap["rows"]
            for gap in self.document["gaps"]
            if gap["state"] == "filled"
        }


@pytest.fixture(scope="module")
def backfilled(recording: Recording) -> Backfilled:
    root = recording.copy("uninterrupted")
    result = backfill(root, recording.simulator.rest_url, "--format", "json")
    return Backfilled(root, result.returncode, result.stderr, json.loads(result.stdout))


def test_every_whole_minute_lost_gets_one_row_with_the_ledgers_values(
    recording: Recording, backfilled: Backfilled
) -> None:
    lost = recording.lost_minutes()
    for cause in FILLED_CAUSES:
        assert any(g["cause"] == cause and whole_minutes_inside(g) for g in recording.gaps), cause
    assert len(lost) >= 2 * len(SYMBOLS)  # several simulated minutes of the outage alone

    assert backfilled.returncode == 0, backfilled.stderr
    document = backfilled.document
    assert (document["exit_code"], document["failed"], document["banned"]) == (0, 0, None)
    assert document["rows"] == len(lost)

    rows = table_rows(backfilled.root)
    rebuilt = [row for row in rows if row["source"] == "backfill"]
    keys = [(row["symbol"], row["event_time"] // MINUTE * MINUTE) for row in rebuilt]
    assert sorted(keys) == sorted(lost)  # one row per minute, none twice, none outside
    compared = 0
    for row, key in zip(rebuilt, keys, strict=True):
        assert row["event_time"] == key[1] + MINUTE - 1  # the minute's last millisecond
        event = recording.truth.get(key)
        if event is None:
            continue  # nothing traded in that minute: the simulator generated no event
        compared += 1
        for column, field in FIELDS.items():
            assert row[column] == Decimal(str(event[field])), (key, column)
    assert compared >= len(rebuilt) // 2

    # The recorded rows are untouched, to the receive time.
    recorded = [row for row in rows if row["source"] == "stream"]
    assert sorted(map(str, recorded)) == sorted(map(str, table_rows(recording.root)))


def test_the_four_readers_and_the_reports_see_the_filled_gaps(
    recording: Recording, backfilled: Backfilled
) -> None:
    root = backfilled.root
    read = {reader: sorted(read_rows_with(reader, root)) for reader in READERS}
    for reader in READERS:
        assert read[reader] == read["pyarrow"], reader
    sources = Counter(row["source"] for row in table_rows(root))
    assert sources["backfill"] == len(recording.lost_minutes())
    for reader in READERS:
        assert sources_with(reader, root) == sources, reader

    verify = run_cli("verify", "--root", str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr

    listed = run_cli("gaps", "--root", str(root), "--state", "resolved", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    resolved = json.loads(listed.stdout)
    filled = backfilled.filled()
    assert {(g["symbol"], g["from_ms"], g["to_ms"]): g["resolution"]["rows"] for g in resolved} == (
        filled
    )
    assert {(g["state"], g["resolution"]["source"]) for g in resolved} == {("resolved", "backfill")}

    # check counts the open gaps only, unless told to count the resolved ones too.
    counted = {
        (g["symbol"], g["from_ms"], g["to_ms"])
        for g in recording.gaps
        if g["cause"] in CHECK_CAUSES
    }
    assert checked_gaps(root) == len(counted - set(filled)) < len(counted)
    assert checked_gaps(root, "--include-resolved") == len(counted)


def checked_gaps(root: Path, *args: str) -> int:
    """The gaps ``recorder check`` counts over the last three hours."""
    check = run_cli(
        "check", "--root", str(root), "--since", "3h", "--max-age", "3h", "--format", "json", *args
    )
    assert check.returncode in {0, 1}, check.stdout + check.stderr
    return sum(int(symbol["gaps"]) for symbol in json.loads(check.stdout)["symbols"])


def resolution_records(root: Path) -> int:
    return sum(
        len(path.read_text(encoding="utf-8").splitlines())
        for path in (root / "_gaps_resolved").rglob("*.jsonl")
    )


def test_a_kill_mid_run_leaves_nothing_partial_and_a_rerun_finishes_the_same_dataset(
    recording: Recording, backfilled: Backfilled
) -> None:
    assert backfilled.document["requests"] >= 3
    root = recording.copy("killed")
    sent = recording.klines_requests()
    # The next two klines requests are answered as usual (``empty`` only empties an
    # exchangeInfo), the third is held back 3 s: the run is killed while it waits.
    recording.simulator.inject("rest_fail*2;reply=empty,rest_fail+3s;reply=slow")
    env = {"RECORDER_SOURCE__REST_URL": recording.simulator.rest_url}
    process = start_cli("backfill", "--root", str(root), "--concurrency", "1", env=env)
    try:
        wait_until(
            lambda: recording.klines_requests() == sent + 3 or process.poll() is not None,
            30,
            "the third klines request",
        )
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
        process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    # Some gaps were done, not all; what is visible is whole.
    done = resolution_records(root)
    assert 1 <= done < len(backfilled.filled())
    assert list(root.glob("date=*/symbol=*/backfill-*.parquet"))
    for path in parquet_files(root):
        parts = path.relative_to(root).parts
        assert [part.partition("=")[0] for part in parts[:-1]] == ["date", "symbol"], path
        pq.read_table(path)

    # Off a terminal, one summary line; the gaps done before are not done again.
    rerun = backfill(root, recording.simulator.rest_url)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    [line] = rerun.stdout.splitlines()
    assert line.startswith(f"backfill: filled {len(backfilled.filled()) - done} gaps")
    assert f"{done} resolved before" in line

    final = content(root)
    assert final == content(backfilled.root)
    assert len({(row[0], row[1]) for row in final}) == len(final)

    third = backfill(root, recording.simulator.rest_url)
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.startswith("backfill: filled 0 gaps (0 rows)")
    assert len(third.stdout.splitlines()) == 1
    assert content(root) == final


def test_a_ban_stops_the_backfill_with_exit_2(recording: Recording) -> None:
    root = recording.copy("banned")
    sent = recording.klines_requests()
    recording.simulator.inject("rest_fail;reply=418;retry_after=300s")
    result = backfill(root, recording.simulator.rest_url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "banned this IP (HTTP 418)" in result.stderr
    assert len(result.stdout.splitlines()) == 1
    # Nothing more is asked once banned: at most the requests already in flight.
    assert recording.klines_requests() - sent <= len(SYMBOLS)


def test_a_root_of_schema_version_1_is_refused_naming_recorder_migrate(tmp_path: Path) -> None:
    root = tmp_path / "old"
    write_data_file(root, "BTCUSDT", [T0, T0 + 2_000], day=dt.date(2024, 5, 1), version=1)
    result = run_cli("backfill", "--root", str(root))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "recorder migrate" in result.stderr
    assert not (root / "_gaps_resolved").exists()
