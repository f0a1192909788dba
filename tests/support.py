"""Test support: the recorder and the simulated exchange as real subprocesses, and readers.

End-to-end tests drive ``python -m recorder`` exactly as an operator would (a TOML file, flags,
SIGTERM, SIGKILL) against ``recorder simulate`` on loopback, and read the dataset back with the
analyst's tools, never with the recorder's own code.
"""

import contextlib
import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.errors import ConfigError

RECORDER = [sys.executable, "-m", "recorder"]
DECIMAL_COLUMNS = ("close", "open", "high", "low", "volume", "quote_volume")
PAYLOAD_KEYS = {
    "close": "c",
    "open": "o",
    "high": "h",
    "low": "l",
    "volume": "v",
    "quote_volume": "q",
}

Row = tuple[str, int, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]
"""(symbol, event_time ms, close, open, high, low, volume, quote_volume)."""


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    env["PYTHONUNBUFFERED"] = "1"
    # Tests run recorders side by side and back to back: never the fixed default metrics port.
    env["RECORDER_METRICS__ADDRESS"] = "127.0.0.1:0"
    return env


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``recorder *args`` to its end, as cron would, without this machine's settings.

    ``env`` adds settings (``RECORDER_...``) to the command's environment.
    """
    return subprocess.run(
        [*RECORDER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_environment() | (env or {}),
    )


def start_cli(*args: str, env: dict[str, str] | None = None) -> "subprocess.Popen[str]":
    """Start ``recorder *args`` as :func:`run_cli` runs it, without waiting for its end."""
    return subprocess.Popen(
        [*RECORDER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment() | (env or {}),
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class SimulatorProcess:
    """``recorder simulate`` in a subprocess, with its control endpoints."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*RECORDER, "simulate", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_environment(),
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=20):
                self.stop()
                pytest.fail(f"simulator did not start: {log_path.read_text()}")
        listening = json.loads(self.process.stdout.readline())
        self.url: str = listening["url"]
        self.rest_url: str = listening["rest_url"]

    def get(self, path: str) -> Any:
        """GET a control or REST endpoint and decode its JSON."""
        with urllib.request.urlopen(self.rest_url + path, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def inject(self, spec: str) -> None:
        """Inject faults written in the simulator's fault grammar."""
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by the test
            self.rest_url + "/_sim/faults",
            data=json.dumps({"spec": spec}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 202

    def events(self) -> list[dict[str, Any]]:
        """The ground truth: every generated event and the connections it was delivered to."""
        body = self.get("/_sim/events")
        events: list[dict[str, Any]] = body["events"] if isinstance(body, dict) else body
        return events

    def delivered_rows(self) -> list[Row]:
        """Rows for every event delivered to at least one connection."""
        return [payload_row(e["payload"]) for e in self.events() if e["delivered_to"]]

    def connections(self) -> list[dict[str, Any]]:
        """Open connections."""
        body = self.get("/_sim/connections")
        connections: list[dict[str, Any]] = body["connections"] if isinstance(body, dict) else body
        return connections

    def freeze(self) -> None:
        """Stop delivering to every connection so that the delivered set no longer moves.

        Returns once the stall is in force on every open connection: the ledger marks a frame
        delivered just before sending it, and a stalled connection sends no data frame.
        """
        self.inject("stall+600s")
        wait_until(
            lambda: all(connection["stalled"] for connection in self.connections()),
            10,
            "the stall in force on every connection",
        )

    def delivered_count(self) -> int:
        """How many distinct events were delivered to at least one connection."""
        return sum(1 for event in self.events() if event["delivered_to"])

    def wait_for_deliveries(
        self, symbols: list[str], *, each: int = 0, event_time_ms: int = 0, timeout: float = 30
    ) -> None:
        """Wait until, from now on, every symbol got ``each`` more events delivered and the
        newest delivered ``E`` moved on by ``event_time_ms``: data time, not wall time."""

        def delivered() -> tuple[Counter[str], int]:
            events = [event["payload"] for event in self.events() if event["delivered_to"]]
            return Counter(str(e["s"]) for e in events), max(
                (int(e["E"]) for e in events), default=0
            )

        counts, newest = delivered()

        def moved_on() -> bool:
            now_counts, now_newest = delivered()
            return now_newest >= newest + event_time_ms and all(
                now_counts[symbol] >= counts[symbol] + each for symbol in symbols
            )

        wait_until(moved_on, timeout, f"{each} more events of each symbol, {event_time_ms} ms on")

    def stop(self) -> None:
        """Stop the simulator."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def metric_values(address: str, name: str) -> dict[str, float]:
    """Samples of one metric family at ``http://<address>/metrics``, by label text."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, labels = series.partition("{")
        if base in {name, name + "_total"}:
            values[labels.rstrip("}")] = float(value)
    return values


def payload_row(payload: dict[str, Any]) -> Row:
    """The row an exchange payload must become in the dataset."""
    return (
        str(payload["s"]),
        int(payload["E"]),
        *(Decimal(str(payload[PAYLOAD_KEYS[c]])) for c in DECIMAL_COLUMNS),
    )  # type: ignore[return-value]


class RecorderProcess:
    """``recorder run`` in a subprocess, configured by a TOML file and flags."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        root: Path,
        url: str,
        symbols: list[str] | None,
        config: str = "",
        name: str = "recorder",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.config_path = tmp_path / f"{name}.toml"
        self.config_path.write_text(config, encoding="utf-8")
        self.log_path = tmp_path / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *RECORDER,
                "run",
                "-c",
                str(self.config_path),
                "--url",
                url,
                # None: the symbols come from the file (which a SIGHUP reads again).
                *([] if symbols is None else ["--symbols", ",".join(symbols)]),
                "--root",
                str(root),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_environment() | (env or {}),
        )

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        lines = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"event": "<not json>", "line": line})
        return lines

    def logged(self, event: str) -> list[dict[str, Any]]:
        """Log lines whose ``event`` is ``event``."""
        return [line for line in self.logs() if line.get("event") == event]

    def wait_for_log(self, event: str, timeout: float = 15) -> dict[str, Any]:
        """Wait until a line with ``event`` is logged and return it."""
        wait_until(
            lambda: bool(self.logged(event)) or self.process.poll() is not None,
            timeout,
            f"log event {event!r}",
        )
        found = self.logged(event)
        assert found, f"recorder exited ({self.process.returncode}) before logging {event!r}"
        return found[0]

    def terminate(self, within: float = 10) -> int:
        """Send SIGTERM and return the exit code; fail if it takes longer than ``within``."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"recorder did not stop within {within}s of SIGTERM")
        self._log.close()
        if code != 0:
            # Pytest prints captured stderr with a failure: the reason is in the log's tail.
            sys.stderr.write(f"--- {self.log_path.name} exited {code} ---\n{self.log_tail()}\n")
        return code

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, as written."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def metric_total(self, name: str) -> float:
        """The sum of every series of metric family ``name``, read from ``/metrics`` now."""
        address = str(self.wait_for_log("metrics listening")["address"])
        return sum(metric_values(address, name).values())

    def wait_until_caught_up(
        self, simulator: "SimulatorProcess", *, durable: bool, timeout: float = 15
    ) -> None:
        """Wait until this recorder has every event ``simulator`` has delivered so far.

        With ``durable``, in its write-ahead log (what a kill -9 cannot lose); else received
        and decoded (what a clean stop writes). The recorder must be the simulator's only
        client; freeze the simulator first to have everything it will ever deliver.
        """
        delivered = simulator.delivered_count()
        # Both count each event once: a copy from an overlapping connection is not received.
        metric = "recorder_events_written" if durable else "recorder_events_received"

        def caught_up() -> bool:
            return self.metric_total(metric) >= delivered

        what = "logged" if durable else "received"
        wait_until(caught_up, timeout, f"every delivered event {what} by the recorder")

    def kill(self) -> None:
        """SIGKILL: no flush, no seal, no goodbye."""
        self.process.kill()
        self.process.wait()
        self._log.close()

    def close(self) -> None:
        """Close the log file (idempotent)."""
        self._log.close()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None


StartSimulator = Callable[..., SimulatorProcess]
"""The ``start_simulator`` fixture: starts ``recorder simulate`` with the given CLI arguments."""
StartRecorder = Callable[..., RecorderProcess]
"""The ``start_recorder`` fixture: starts ``recorder run`` with :class:`RecorderProcess` args."""


def read_rows_with(reader: str, root: Path) -> list[Row]:
    """Read every row of the dataset at ``root`` with one analyst tool, as plain tuples.

    Each reader is used the way the README tells analysts to use it; the partition columns
    (``symbol``, ``date``) come from the Hive layout, not from the files.
    """
    columns = ["symbol", "event_time", *DECIMAL_COLUMNS]
    if reader == "pandas":
        import pandas as pd  # noqa: PLC0415

        frame = pd.read_parquet(root)
        return [
            (
                str(r.symbol),
                int(r.event_time.value // 1_000_000),
                *(Decimal(r[c]) for c in DECIMAL_COLUMNS),
            )  # type: ignore[misc]
            for _, r in frame.iterrows()
        ]
    if reader == "duckdb":
        import duckdb  # noqa: PLC0415

        query = (
            "SELECT symbol, epoch_ms(event_time), close, open, high, low, volume, quote_volume "
            "FROM read_parquet(?, hive_partitioning = true)"
        )
        rows = duckdb.connect().execute(query, [f"{root}/**/*.parquet"]).fetchall()
        return [(str(r[0]), int(r[1]), *(Decimal(v) for v in r[2:])) for r in rows]  # type: ignore[misc]
    if reader == "polars":
        import polars as pl  # noqa: PLC0415

        frame = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
        return [
            (
                str(r["symbol"]),
                int(r["event_time"].timestamp() * 1000 + 0.5),
                *(Decimal(r[c]) for c in DECIMAL_COLUMNS),
            )  # type: ignore[misc]
            for r in frame.select(columns).iter_rows(named=True)
        ]
    if reader == "pyarrow":
        import pyarrow.dataset as ds  # noqa: PLC0415

        table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
        return [
            (
                str(r["symbol"]),
                int(r["event_time"].timestamp() * 1000 + 0.5),
                *(r[c] for c in DECIMAL_COLUMNS),
            )
            for r in table.select(columns).to_pylist()
        ]
    msg = f"unknown reader {reader}"
    raise ValueError(msg)


READERS = ("pandas", "duckdb", "polars", "pyarrow")


def sources_with(reader: str, root: Path) -> Counter[str | None]:
    """How many rows of each ``source`` (stream, backfill) one analyst tool reads under ``root``.

    Each call is the SPEC's for that reader; it fails where the reader refuses the root.
    """
    if reader == "pandas":
        import pandas as pd  # noqa: PLC0415

        values = pd.read_parquet(root)["source"].tolist()
    elif reader == "duckdb":
        import duckdb  # noqa: PLC0415

        query = "SELECT source FROM read_parquet(?, hive_partitioning = true)"
        rows = duckdb.connect().execute(query, [f"{root}/**/*.parquet"]).fetchall()
        values = [row[0] for row in rows]
    elif reader == "polars":
        import polars as pl  # noqa: PLC0415

        scan = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
        values = scan.collect()["source"].to_list()
    else:
        import pyarrow.dataset as ds  # noqa: PLC0415

        table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
        values = table.column("source").to_pylist()
    return Counter(values)


def parquet_files(root: Path) -> list[Path]:
    """Every ``.parquet`` file under ``root``, wherever it is (DuckDB's glob enters ``_`` dirs)."""
    return sorted(root.rglob("*.parquet"))


def gap_records(root: Path) -> list[dict[str, Any]]:
    """The gap log read as an analyst would: DuckDB over the JSON Lines files."""
    import duckdb  # noqa: PLC0415

    if not list((root / "_gaps").rglob("*.jsonl")):
        return []
    connection = duckdb.connect()
    relation = connection.execute(
        "SELECT symbol, from_ms, to_ms, missed, cause "
        "FROM read_json(?, format = 'newline_delimited')",
        [f"{root}/_gaps/**/*.jsonl"],
    )
    columns = [c[0] for c in relation.description]
    return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


def missed_between(before_ms: int, after_ms: int, interval_ms: int = 2000) -> int:
    """The SPEC's missed updates between two events: ``round(span / interval) - 1``."""
    return (2 * (after_ms - before_ms) + interval_ms) // (2 * interval_ms) - 1


def data_gaps(rows: list[Row], interval_ms: int = 2000) -> set[tuple[str, int, int, int]]:
    """Gaps recomputed from recorded rows: (symbol, from_ms, to_ms, missed)."""
    by_symbol: dict[str, list[int]] = {}
    for row in rows:
        by_symbol.setdefault(row[0], []).append(row[1])
    gaps = set()
    for symbol, times in by_symbol.items():
        ordered = sorted(times)
        for before, after in itertools.pairwise(ordered):
            missed = missed_between(before, after, interval_ms)
            if missed >= 1:
                gaps.add((symbol, before, after, missed))
    return gaps


def config_error(call: object, *args: object, **kwargs: object) -> str:
    """Call ``call`` and return the message of the :class:`ConfigError` it must raise."""
    assert callable(call)
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full (unbuffered, so ENOSPC is seen here)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
