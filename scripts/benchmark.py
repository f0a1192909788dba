"""Measure the recorder's throughput and costs on this machine, each against a naive baseline.

Three benchmarks, all measured in the same run so that the ratios compare like with like:

1. **Decode** (in-process, no I/O): :func:`recorder.ingest.decode.decode_frame` on simulated
   combined frames (one event each) and all-market array frames (one frame per tick, every changed
   symbol), against ``json.loads`` plus a dict of the fields: what a naive recorder does,
   without validation.
2. **Storage** (in-process, a temporary directory): :class:`recorder.storage.writer.DatasetWriter`
   logging one batch per flush (``write_ahead`` + ``seal_due``) and sealing at the end
   (``close``), against writing each flush straight to its own Parquet file with pyarrow (the
   row-group-per-flush layout the design avoids), with and without ``fsync``.
3. **End to end** over loopback: ``recorder simulate`` and ``recorder run`` as subprocesses,
   at Binance's real pace and at a stress speed; the rate, CPU and memory of the recorder
   process, read from ``/proc``, and the dataset it leaves, read back with pyarrow.

Usage::

    .venv/bin/python scripts/benchmark.py [--quick] [--json FILE] [--tmp-dir DIR]
        [--stress-speed X] [--only decode|storage|e2e ...]

It prints Markdown tables; ``docs/performance.md`` explains what each number measures.
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import recorder
from recorder.clock import SystemClock
from recorder.ingest.decode import decode_frame
from recorder.model import MiniTicker
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.market import MarketGenerator, TickBatch, encode_json
from recorder.simulate.protocol import array_json
from recorder.storage.schema import PARQUET_COMPRESSION, build_wal_batch
from recorder.storage.writer import DatasetWriter
from recorder.symbols import ALL_MARKET_STREAM, stream_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RECORDER_COMMAND = (sys.executable, "-m", "recorder")
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

SEED = 7
START_MS = 1_768_464_000_000
"""2026-01-15T08:00:00Z: ``E`` of the first simulated tick, far from a UTC day boundary."""
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
DRAIN_SECONDS = 1.0
"""Pause between freezing the simulator and SIGTERM, so the recorder reads what was sent."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each benchmark does.

    Attributes:
        symbols: simulated symbols (``SYM0001USDT``...).
        decode_ticks: ticks of the market decoded per round (one frame per symbol per tick,
            or one array frame per tick).
        decode_rounds: rounds of each decoder, interleaved; the median round is reported.
        storage_flushes: flushes of one event per symbol each; also the rows of each sealed
            file.
        realistic_seconds: measurement window of the end-to-end run at speed 1.
        stress_seconds: measurement window of the end-to-end run at ``stress_speed``.
        stress_speed: simulation speed factor of the stress run.
    """

    symbols: int
    decode_ticks: int
    decode_rounds: int
    storage_flushes: int
    realistic_seconds: float
    stress_seconds: float
    stress_speed: float


FULL_PLAN = Plan(
    symbols=300,
    decode_ticks=100,
    decode_rounds=7,
    storage_flushes=1800,
    realistic_seconds=40,
    stress_seconds=50,
    stress_speed=200,
)
QUICK_PLAN = Plan(
    symbols=300,
    decode_ticks=20,
    decode_rounds=5,
    storage_flushes=120,
    realistic_seconds=6,
    stress_seconds=8,
    stress_speed=200,
)


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True, slots=True)
class Timing:
    """Elapsed time of one measured piece of work.

    Attributes:
        wall_s: :func:`time.perf_counter` seconds.
        cpu_s: :func:`time.process_time` seconds (every thread of this process).
    """

    wall_s: float
    cpu_s: float


def measure(work: Callable[[], object]) -> Timing:
    """Run ``work`` once after a garbage collection; return its wall and CPU time."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def median_timing(timings: Sequence[Timing]) -> Timing:
    """Return the median wall and the median CPU time of several rounds."""
    return Timing(
        statistics.median(t.wall_s for t in timings), statistics.median(t.cpu_s for t in timings)
    )


def micros_per_item(seconds: float, count: int) -> float:
    """Return microseconds per item."""
    return seconds / count * 1e6


def per_second(count: int, seconds: float) -> float:
    """Return items per second."""
    return count / seconds if seconds > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Simulated market data


def symbol_names(count: int) -> tuple[str, ...]:
    """Return ``count`` generated contract names: ``SYM0001USDT``, ``SYM0002USDT``..."""
    return tuple(f"SYM{number:04d}USDT" for number in range(1, count + 1))


def market_ticks(
    symbols: tuple[str, ...], ticks: int, *, interval_ms: int, activity: float | None
) -> list[TickBatch]:
    """Generate ``ticks`` ticks of the simulated market (every price profile, half with ps/st).

    Args:
        symbols: the contracts.
        ticks: how many ticks.
        interval_ms: simulated milliseconds between ticks.
        activity: probability that a symbol changes in a tick; ``None``: the simulator's
            default draw (0.9 to 1.0 per symbol).
    """
    config = SimulatorConfig(
        symbols=symbols, seed=SEED, interval_ms=interval_ms, jitter_ms=100, activity=activity
    )
    generator = MarketGenerator(config, START_MS)
    return [generator.step() for _ in range(ticks)]


def combined_frame(symbol: str, payload_json: str) -> str:
    """Frame one payload as the routed combined stream sends it."""
    return f'{{"stream":{encode_json(stream_name(symbol))},"data":{payload_json}}}'


def array_frame(batch: TickBatch) -> str:
    """Frame one tick as the combined ``!miniTicker@arr`` stream sends it."""
    items = array_json([event.payload_json for event in batch.events])
    return f'{{"stream":{encode_json(ALL_MARKET_STREAM)},"data":{items}}}'


# ---------------------------------------------------------------------------------------------
# 1. Decode


def naive_row(payload: dict[str, Any]) -> dict[str, Any]:
    """Pick the fields of one payload into a row dict, as a recorder without validation does."""
    return {
        "symbol": payload["s"],
        "event_time": payload["E"],
        "close": payload["c"],
        "open": payload["o"],
        "high": payload["h"],
        "low": payload["l"],
        "volume": payload["v"],
        "quote_volume": payload["q"],
        "pair": payload.get("ps"),
        "contract_type": payload.get("st"),
    }


def naive_decode_combined(frame: str) -> dict[str, Any]:
    """The baseline of a combined frame: ``json.loads`` and a row dict."""
    return naive_row(json.loads(frame)["data"])


def naive_decode_array(frame: str) -> list[dict[str, Any]]:
    """The baseline of an all-market frame: ``json.loads`` and a row dict per item."""
    return [naive_row(item) for item in json.loads(frame)["data"]]


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """One frame form decoded by the recorder and by the baseline (median round each).

    Attributes:
        form: ``"combined"`` (one event per frame) or ``"all-market array"``.
        frames: frames per round.
        events: events per round.
        rounds: rounds of each decoder.
        recorder: median round of :func:`~recorder.ingest.decode.decode_frame`.
        baseline: median round of ``json.loads`` plus row dicts.
    """

    form: str
    frames: int
    events: int
    rounds: int
    recorder: Timing
    baseline: Timing

    @property
    def cost_ratio(self) -> float:
        """Recorder time per frame divided by baseline time per frame (wall)."""
        return self.recorder.wall_s / self.baseline.wall_s


def bench_decode_form(
    form: str,
    frames: Sequence[str],
    subscribed: frozenset[str] | None,
    baseline: Callable[[str], object],
    rounds: int,
) -> DecodeResult:
    """Time ``decode_frame`` and ``baseline`` over ``frames``, interleaving their rounds.

    Raises:
        RuntimeError: a frame was not decoded entirely into events (the benchmark would then
            measure the rejection path, not the normal one).
    """
    receive_time = START_MS * 1000
    # Arrays are read item by item only in the all-market mode (off unless asked for).
    all_market = form == "all-market array"
    events = 0
    for frame in frames:
        decoded = decode_frame(
            frame, receive_time=receive_time, subscribed=subscribed, all_market=all_market
        )
        if decoded.rejections or not decoded.events:
            raise RuntimeError(f"benchmark frame not accepted: {decoded.rejections[:1]}")
        events += len(decoded.events)

    def run_recorder() -> None:
        for frame in frames:
            decode_frame(
                frame, receive_time=receive_time, subscribed=subscribed, all_market=all_market
            )

    def run_baseline() -> None:
        for frame in frames:
            baseline(frame)

    recorder_rounds, baseline_rounds = [], []
    for _ in range(rounds):
        recorder_rounds.append(measure(run_recorder))
        baseline_rounds.append(measure(run_baseline))
    return DecodeResult(
        form=form,
        frames=len(frames),
        events=events,
        rounds=rounds,
        recorder=median_timing(recorder_rounds),
        baseline=median_timing(baseline_rounds),
    )


def bench_decode(plan: Plan) -> list[DecodeResult]:
    """Decode simulated combined and all-market frames of ``plan.symbols`` symbols."""
    symbols = symbol_names(plan.symbols)
    ticks = market_ticks(symbols, plan.decode_ticks, interval_ms=2_000, activity=None)
    combined = [
        combined_frame(event.symbol, event.payload_json) for tick in ticks for event in tick.events
    ]
    arrays = [array_frame(tick) for tick in ticks]
    return [
        bench_decode_form(
            "combined", combined, frozenset(symbols), naive_decode_combined, plan.decode_rounds
        ),
        bench_decode_form("all-market array", arrays, None, naive_decode_array, plan.decode_rounds),
    ]


# ---------------------------------------------------------------------------------------------
# 2. Storage


@dataclass(frozen=True, slots=True)
class StorageResult:
    """The recorder's writer and the naive file-per-flush writer on the same events.

    Attributes:
        symbols: partitions written.
        flushes: batches written (one event per symbol each).
        events: events written.
        write_ahead: every ``write_ahead`` + ``seal_due`` call (the per-flush path).
        seal: the final ``close``, which seals every partition.
        wal_bytes: write-ahead segment bytes just before ``close``.
        sealed_files: Parquet files published by the recorder.
        sealed_bytes: their total size.
        naive: building and writing one Parquet file per flush, no ``fsync``.
        naive_fsync: the same, each file and its directory fsynced.
        naive_files: files written by the naive writer (per run).
        naive_bytes: their total size.
    """

    symbols: int
    flushes: int
    events: int
    write_ahead: Timing
    seal: Timing
    wal_bytes: int
    sealed_files: int
    sealed_bytes: int
    naive: Timing
    naive_fsync: Timing
    naive_files: int
    naive_bytes: int

    @property
    def recorder(self) -> Timing:
        """The recorder's whole write path: per-flush logging plus the final seal."""
        return Timing(
            self.write_ahead.wall_s + self.seal.wall_s, self.write_ahead.cpu_s + self.seal.cpu_s
        )


def storage_batches(plan: Plan) -> list[list[MiniTicker]]:
    """Build ``plan.storage_flushes`` flushes of one decoded event per symbol, 1 s apart."""
    symbols = symbol_names(plan.symbols)
    subscribed = frozenset(symbols)
    ticks = market_ticks(symbols, plan.storage_flushes, interval_ms=1_000, activity=1.0)
    batches = []
    for number, tick in enumerate(ticks):
        receive_time = (START_MS + number * 1_000 + 200) * 1000
        batch: list[MiniTicker] = []
        for event in tick.events:
            frame = combined_frame(event.symbol, event.payload_json)
            decoded = decode_frame(frame, receive_time=receive_time, subscribed=subscribed)
            batch.extend(decoded.events)
        batches.append(batch)
    return batches


def data_files(root: Path) -> list[Path]:
    """Return the Parquet files of the dataset partitions under ``root``."""
    return sorted(root.glob("date=*/symbol=*/*.parquet"))


def total_size(paths: Sequence[Path]) -> int:
    """Return the total size of ``paths`` in bytes."""
    return sum(path.stat().st_size for path in paths)


def write_with_recorder(
    root: Path, batches: Sequence[Sequence[MiniTicker]]
) -> tuple[Timing, Timing, int]:
    """Write ``batches`` through a :class:`DatasetWriter`; return the two timings and WAL bytes.

    The writer's limits (1 h, 128 MiB) are the defaults: nothing is sealed before ``close``.
    """
    writer = DatasetWriter(
        root,
        instance_id="bench",
        max_file_age=3_600,
        max_file_bytes=128 * MIB,
        day_grace_ms=10_000,
        clock=SystemClock(),
    )
    writer.open()

    def log_every_flush() -> None:
        for batch in batches:
            writer.write_ahead(batch)
            writer.seal_due()

    write_ahead = measure(log_every_flush)
    wal_bytes = writer.wal_bytes
    seal = measure(writer.close)
    return write_ahead, seal, wal_bytes


def write_naively(
    directory: Path, batches: Sequence[Sequence[MiniTicker]], *, fsync: bool
) -> Timing:
    """Write each batch to its own zstd Parquet file, as a naive recorder would.

    The table is built with the recorder's own column builder, so both writers store the same
    types and the comparison is about the layout and the durability work only.
    """

    def write_all() -> None:
        for number, batch in enumerate(batches):
            table = pa.Table.from_batches([build_wal_batch(batch)])
            path = directory / f"flush-{number:06d}.parquet"
            with path.open("wb") as stream:
                pq.write_table(table, stream, compression=PARQUET_COMPRESSION)
                if fsync:
                    stream.flush()
                    os.fsync(stream.fileno())
            if fsync:
                directory_fd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(directory_fd)
                finally:
                    os.close(directory_fd)

    return measure(write_all)


def bench_storage(plan: Plan, scratch: Path) -> StorageResult:
    """Write the same flushes with the recorder's writer and with the naive writers.

    Raises:
        RuntimeError: the sealed files do not hold exactly the events written.
    """
    batches = storage_batches(plan)
    events = sum(len(batch) for batch in batches)
    root = scratch / "storage-recorder"
    write_ahead, seal, wal_bytes = write_with_recorder(root, batches)
    sealed = data_files(root)
    sealed_rows = sum(pq.read_metadata(path).num_rows for path in sealed)
    if sealed_rows != events:
        raise RuntimeError(f"the recorder sealed {sealed_rows} rows, {events} were written")
    timings = {}
    for fsync in (False, True):
        directory = scratch / f"storage-naive-{'fsync' if fsync else 'plain'}"
        directory.mkdir()
        timings[fsync] = write_naively(directory, batches, fsync=fsync)
    naive = sorted((scratch / "storage-naive-plain").glob("*.parquet"))
    return StorageResult(
        symbols=plan.symbols,
        flushes=len(batches),
        events=events,
        write_ahead=write_ahead,
        seal=seal,
        wal_bytes=wal_bytes,
        sealed_files=len(sealed),
        sealed_bytes=total_size(sealed),
        naive=timings[False],
        naive_fsync=timings[True],
        naive_files=len(naive),
        naive_bytes=total_size(naive),
    )


# ---------------------------------------------------------------------------------------------
# 3. End to end


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """CPU time and peak memory of a live process, from ``/proc``.

    Attributes:
        cpu_s: user plus system CPU seconds of all its threads so far.
        peak_rss_bytes: its resident set high-water mark (``VmHWM``).
    """

    cpu_s: float
    peak_rss_bytes: int


def sample_process(pid: int) -> ProcessSample:
    """Read ``/proc/<pid>/stat`` (utime + stime) and ``/proc/<pid>/status`` (VmHWM)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name (field 2) may contain spaces; the numeric fields follow its ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return ProcessSample((utime + stime) / CLOCK_TICKS_PER_SECOND, peak_rss(pid) or 0)


def peak_rss(pid: int) -> int | None:
    """Return ``VmHWM`` of a live process in bytes; ``None`` once it has exited."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    return None


def child_environment() -> dict[str, str]:
    """The environment of both subprocesses: no inherited settings, JSON logs, no fixed port."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECORDER_")}
    env["RECORDER_LOG__FORMAT"] = "json"
    env["RECORDER_METRICS__ADDRESS"] = "127.0.0.1:0"
    return env


def stop_process(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    """SIGTERM ``process`` and wait; SIGKILL it if it outlives ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class ExitUsage:
    """How a terminated child ended.

    Attributes:
        exit_code: its exit code (negative: the signal that killed it).
        stop_s: seconds from SIGTERM to exit.
        cpu_s: user plus system CPU seconds over its whole life, from :func:`os.wait4`.
        peak_rss_bytes: the last ``VmHWM`` read while it stopped (every 20 ms): its peak
            resident set size over its life, the final seal included.
    """

    exit_code: int
    stop_s: float
    cpu_s: float
    peak_rss_bytes: int


def terminate_and_reap(process: "subprocess.Popen[bytes]", timeout: float) -> ExitUsage:
    """SIGTERM ``process``, reap it with :func:`os.wait4` and return its resource usage.

    A process that outlives ``timeout`` is killed (its exit code is then ``-9``). The peak
    memory comes from ``/proc``, not from ``ru_maxrss``: the latter survives ``exec`` and so
    counts the memory of this benchmark process that forked the child.
    """
    started = time.perf_counter()
    peak = peak_rss(process.pid) or 0
    process.send_signal(signal.SIGTERM)
    deadline = started + timeout
    while True:
        peak = max(peak, peak_rss(process.pid) or 0)
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    stopped = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return ExitUsage(
        exit_code=process.returncode,
        stop_s=stopped,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=peak,
    )


class Simulator:
    """``recorder simulate`` in a subprocess, and the control endpoints the benchmark reads."""

    def __init__(self, symbols: Sequence[str], speed: float, log: TextIO) -> None:
        self.process = subprocess.Popen(
            [
                *RECORDER_COMMAND,
                "simulate",
                "--port",
                "0",
                "--symbols",
                ",".join(symbols),
                "--speed",
                str(speed),
                "--seed",
                str(SEED),
                "--start-ms",
                str(START_MS),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_environment(),
            cwd=PROJECT_ROOT,
        )
        if self.process.stdout is None:
            raise RuntimeError("no pipe to the simulator")
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=STARTUP_TIMEOUT)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the simulator did not start; see {log.name}")
        listening = json.loads(line)
        self.url: str = listening["url"]
        self.rest_url: str = listening["rest_url"]

    def get(self, path: str) -> Any:
        """``GET`` a path of the simulator's HTTP side; return the decoded JSON answer."""
        with urllib.request.urlopen(self.rest_url + path, timeout=10) as response:  # noqa: S310 - loopback
            return json.load(response)

    def post(self, path: str, body: object) -> Any:
        """``POST`` a JSON body to a control path; return the decoded JSON answer."""
        request = urllib.request.Request(  # noqa: S310 - loopback URL read from the simulator
            self.rest_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def ticks(self) -> int:
        """Ticks of the event clock published so far."""
        ticks: int = self.get("/_sim/status")["ticks"]
        return ticks

    def connections(self) -> list[dict[str, Any]]:
        """The open connections, as the simulator describes them."""
        connections: list[dict[str, Any]] = self.get("/_sim/connections")["connections"]
        return connections

    def delivered(self) -> int:
        """Events delivered so far to the open connections."""
        return sum(int(connection["events_delivered"]) for connection in self.connections())

    def freeze(self) -> None:
        """Stop delivering on every connection, so the delivered count no longer moves."""
        self.post("/_sim/faults", {"spec": "stall+600s"})

    def stop(self) -> None:
        """Stop the simulator and close its pipe."""
        stop_process(self.process, 10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Recorder:
    """``recorder run`` in a subprocess, logging JSON lines into a file."""

    def __init__(self, url: str, symbols: Sequence[str], root: Path, log_path: Path) -> None:
        self.root = root
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *RECORDER_COMMAND,
                    "run",
                    "--url",
                    url,
                    "--symbols",
                    ",".join(symbols),
                    "--root",
                    str(root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(),
                cwd=PROJECT_ROOT,
            )

    def logged(self, event: str) -> list[dict[str, Any]]:
        """Return the JSON log lines whose ``event`` is ``event``."""
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    found.append(record)
        return found

    def wait_until_ready(self) -> None:
        """Wait for the ``ready`` log line (first data received).

        Raises:
            RuntimeError: the recorder exited or did not get ready in time.
        """
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.logged("ready"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"the recorder did not get ready:\n{tail}")
            time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class EndToEndResult:
    """One end-to-end run: the recorder against the simulator over loopback.

    The window runs from when the recorder logged ``ready`` (plus a one-second settle) to the
    sample just before the simulator is frozen; rates and CPU are over the window only.

    Attributes:
        scenario: a short label.
        speed: the simulator's speed factor (1: Binance's real pace, a tick every 2 s).
        symbols: symbols recorded.
        connections: websocket connections the recorder opened.
        window_s: length of the measurement window.
        ticks_in_window: ticks the simulator's event clock published during the window (due:
            ``speed / 2`` per second; fewer means the simulator could not keep its pace).
        delivered_in_window: events the simulator sent during the window.
        recorded_in_window: dataset rows whose ``receive_time`` falls in the window.
        recorder_cpu_s: recorder CPU seconds during the window.
        recorder_peak_rss_bytes: recorder ``VmHWM`` at the end of the window.
        simulator_cpu_s: simulator CPU seconds during the window.
        delivered_total: events the simulator delivered over the whole run.
        recorded_total: rows in the dataset after the stop.
        duplicate_rows: rows beyond the first of each (symbol, event_time).
        rejected: frames the recorder quarantined (from its ``recorder stopped`` log line).
        gaps_by_cause: records in the gap log, by cause.
        files: Parquet files in the dataset.
        parquet_bytes: their total size.
        exit: how the recorder ended after SIGTERM, with its whole-life CPU and peak RSS.
    """

    scenario: str
    speed: float
    symbols: int
    connections: int
    window_s: float
    ticks_in_window: int
    delivered_in_window: int
    recorded_in_window: int
    recorder_cpu_s: float
    recorder_peak_rss_bytes: int
    simulator_cpu_s: float
    delivered_total: int
    recorded_total: int
    duplicate_rows: int
    rejected: int | None
    gaps_by_cause: dict[str, int]
    files: int
    parquet_bytes: int
    exit: ExitUsage

    @property
    def complete(self) -> bool:
        """Every delivered event is in the dataset exactly once, and the stop was clean."""
        return (
            self.recorded_total == self.delivered_total
            and self.duplicate_rows == 0
            and self.exit.exit_code == 0
        )


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    """What the recorder left in its root, read with pyarrow.

    Attributes:
        rows: every row.
        rows_in_window: rows whose ``receive_time`` is within the window.
        duplicate_rows: rows beyond the first of each (symbol, event_time).
        files: data files.
        parquet_bytes: their total size.
    """

    rows: int
    rows_in_window: int
    duplicate_rows: int
    files: int
    parquet_bytes: int


def count_dataset(root: Path, window_us: tuple[int, int]) -> DatasetCounts:
    """Read the dataset at ``root`` with pyarrow and count its rows, in and out of the window."""
    files = data_files(root)
    if not files:
        return DatasetCounts(0, 0, 0, 0, 0)
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(
        columns=["symbol", "event_time", "receive_time"]
    )
    received = table.column("receive_time").cast(pa.int64())
    in_window = pc.and_(pc.greater_equal(received, window_us[0]), pc.less(received, window_us[1]))
    distinct = table.group_by(["symbol", "event_time"]).aggregate([]).num_rows
    return DatasetCounts(
        rows=table.num_rows,
        rows_in_window=pc.sum(in_window).as_py() or 0,
        duplicate_rows=table.num_rows - distinct,
        files=len(files),
        parquet_bytes=total_size(files),
    )


def gap_causes(root: Path) -> dict[str, int]:
    """Count the gap log's records by cause."""
    causes: Counter[str] = Counter()
    for path in sorted((root / "_gaps").glob("**/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            causes[str(json.loads(line)["cause"])] += 1
    return dict(sorted(causes.items()))


def wall_us() -> int:
    """Return the wall clock in microseconds, the clock of the dataset's ``receive_time``."""
    return time.time_ns() // 1000


def run_end_to_end(
    scenario: str, symbols: Sequence[str], speed: float, seconds: float, scratch: Path
) -> EndToEndResult:
    """Record ``symbols`` from a simulator at ``speed`` for a window of ``seconds``."""
    directory = scratch / f"e2e-{scenario}"
    directory.mkdir()
    root = directory / "data"
    with (directory / "simulator.log").open("w", encoding="utf-8") as simulator_log:
        simulator = Simulator(symbols, speed, simulator_log)
        try:
            recorder_process = Recorder(simulator.url, symbols, root, directory / "recorder.log")
            try:
                return _record(
                    scenario,
                    simulator=simulator,
                    recording=recorder_process,
                    speed=speed,
                    seconds=seconds,
                    symbols=len(symbols),
                )
            finally:
                stop_process(recorder_process.process, STOP_TIMEOUT)
        finally:
            simulator.stop()


def _record(
    scenario: str,
    *,
    simulator: Simulator,
    recording: Recorder,
    speed: float,
    seconds: float,
    symbols: int,
) -> EndToEndResult:
    recording.wait_until_ready()
    time.sleep(1.0)  # every connection is subscribed and delivering
    pid, simulator_pid = recording.process.pid, simulator.process.pid
    connections = len(simulator.connections())
    ticks_before, delivered_before = simulator.ticks(), simulator.delivered()
    recorder_before, simulator_before = sample_process(pid), sample_process(simulator_pid)
    started, started_us = time.perf_counter(), wall_us()
    time.sleep(seconds)
    recorder_after, simulator_after = sample_process(pid), sample_process(simulator_pid)
    window_s, ended_us = time.perf_counter() - started, wall_us()
    ticks_in_window = simulator.ticks() - ticks_before
    delivered_in_window = simulator.delivered() - delivered_before
    simulator.freeze()
    time.sleep(DRAIN_SECONDS)
    delivered_total = simulator.delivered()
    exit_usage = terminate_and_reap(recording.process, STOP_TIMEOUT)
    stopped = recording.logged("recorder stopped")
    counts = count_dataset(recording.root, (started_us, ended_us))
    return EndToEndResult(
        scenario=scenario,
        speed=speed,
        symbols=symbols,
        connections=connections,
        window_s=window_s,
        ticks_in_window=ticks_in_window,
        delivered_in_window=delivered_in_window,
        recorded_in_window=counts.rows_in_window,
        recorder_cpu_s=recorder_after.cpu_s - recorder_before.cpu_s,
        recorder_peak_rss_bytes=recorder_after.peak_rss_bytes,
        simulator_cpu_s=simulator_after.cpu_s - simulator_before.cpu_s,
        delivered_total=delivered_total,
        recorded_total=counts.rows,
        duplicate_rows=counts.duplicate_rows,
        rejected=int(stopped[0]["rejected"]) if stopped else None,
        gaps_by_cause=gap_causes(recording.root),
        files=counts.files,
        parquet_bytes=counts.parquet_bytes,
        exit=exit_usage,
    )


def bench_end_to_end(plan: Plan, scratch: Path) -> list[EndToEndResult]:
    """Run the realistic (speed 1) and the stress scenario."""
    symbols = symbol_names(plan.symbols)
    return [
        run_end_to_end("realistic", symbols, 1.0, plan.realistic_seconds, scratch),
        run_end_to_end("stress", symbols, plan.stress_speed, plan.stress_seconds, scratch),
    ]


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the numbers were measured.

    Attributes:
        cpus: CPUs this process may run on.
        cpu_model: the first ``model name`` of ``/proc/cpuinfo``.
        memory_gib: total memory.
        kernel: the kernel release.
        python: the interpreter version.
        packages: versions of the libraries on the hot path.
        scratch_filesystem: file system type of the scratch directory (fsync costs depend on it).
        measured_at: when the run started, UTC.
    """

    cpus: int
    cpu_model: str
    memory_gib: float
    kernel: str
    python: str
    packages: dict[str, str]
    scratch_filesystem: str
    measured_at: str

    def describe(self) -> str:
        """One line for the top of the report."""
        packages = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        return (
            f"{self.cpus} CPUs ({self.cpu_model}), {self.memory_gib:.1f} GiB RAM, "
            f"Linux {self.kernel}, Python {self.python}, {packages}; "
            f"scratch directory on {self.scratch_filesystem}; measured {self.measured_at}"
        )


def _proc_value(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return "unknown"


def filesystem_of(path: Path) -> str:
    """Return the type of the file system holding ``path``, from ``/proc/mounts``."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            mount_point, fs_type = parts[1], parts[2]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    return kind


def describe_machine(scratch: Path) -> Machine:
    """Describe this machine and the software measured."""
    memory_kib = _proc_value("/proc/meminfo", "MemTotal").split()[0]
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=_proc_value("/proc/cpuinfo", "model name"),
        memory_gib=int(memory_kib) / MIB if memory_kib.isdigit() else math.nan,
        kernel=platform.release(),
        python=platform.python_version(),
        packages={
            "recorder": recorder.__version__,
            **{
                name: importlib.metadata.version(name) for name in ("pyarrow", "msgspec", "aiohttp")
            },
        },
        scratch_filesystem=filesystem_of(scratch),
        measured_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def number(value: float, digits: int = 3) -> str:
    """Round to ``digits`` significant digits and group thousands: ``227,000``, ``4.43``."""
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    return f"{rounded:,.{max(0, decimals)}f}"


def ratio(numerator: float, denominator: float) -> str:
    """Write ``numerator / denominator`` as ``2.0x`` (two significant digits)."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return "n/a"
    return f"{number(numerator / denominator, 2)}x"


Table = list[list[str]]


def markdown(header: Sequence[str], rows: Table) -> str:
    """Render a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


DECODE_HEADER = (
    "frame form",
    "measure",
    "recorder (`decode_frame`)",
    "baseline (`json.loads` + dict)",
    "recorder ÷ baseline",
)


def decode_table(results: Sequence[DecodeResult]) -> Table:
    """Rows of the decode benchmark: time per frame and per event, and rates (wall clock)."""
    rows = []
    for result in results:
        if result.events == result.frames:
            form = f"{result.form} (1 event per frame)"
        else:
            form = f"{result.form} (mean {number(result.events / result.frames)} events per frame)"
        mine, base = result.recorder.wall_s, result.baseline.wall_s
        rows.append(
            [
                form,
                "µs per frame",
                number(micros_per_item(mine, result.frames)),
                number(micros_per_item(base, result.frames)),
                ratio(mine, base),
            ]
        )
        if result.events != result.frames:
            rows.append(
                [
                    form,
                    "µs per event",
                    number(micros_per_item(mine, result.events)),
                    number(micros_per_item(base, result.events)),
                    ratio(mine, base),
                ]
            )
        rows.append(
            [
                form,
                "events per second",
                number(per_second(result.events, mine)),
                number(per_second(result.events, base)),
                ratio(base, mine),
            ]
        )
    return rows


STORAGE_HEADER = (
    "measure",
    "recorder (WAL, then sealed files)",
    "naive: file per flush",
    "naive + fsync",
    "recorder ÷ naive",
    "recorder ÷ naive + fsync",
)


def storage_table(result: StorageResult) -> Table:
    """Rows of the storage benchmark."""
    events = result.events
    mine = result.recorder

    def cost_row(label: str, pick: Callable[[Timing], float]) -> list[str]:
        naive, synced = pick(result.naive), pick(result.naive_fsync)
        return [
            label,
            number(micros_per_item(pick(mine), events)),
            number(micros_per_item(naive, events)),
            number(micros_per_item(synced, events)),
            ratio(pick(mine), naive),
            ratio(pick(mine), synced),
        ]

    def rate_row(label: str, pick: Callable[[Timing], float]) -> list[str]:
        naive, synced = pick(result.naive), pick(result.naive_fsync)
        return [
            label,
            number(per_second(events, pick(mine))),
            number(per_second(events, naive)),
            number(per_second(events, synced)),
            ratio(naive, pick(mine)),
            ratio(synced, pick(mine)),
        ]

    per_event_disk = result.sealed_bytes / events
    naive_disk = result.naive_bytes / events
    return [
        [
            "CPU µs per event: every flush (`write_ahead` + `seal_due`)",
            number(micros_per_item(result.write_ahead.cpu_s, events)),
            "",
            "",
            "",
            "",
        ],
        [
            "CPU µs per event: final seal (`close`)",
            number(micros_per_item(result.seal.cpu_s, events)),
            "",
            "",
            "",
            "",
        ],
        cost_row("CPU µs per event, total", lambda t: t.cpu_s),
        cost_row("wall µs per event, total", lambda t: t.wall_s),
        rate_row("events per second (wall)", lambda t: t.wall_s),
        [
            "Parquet bytes per event on disk",
            number(per_event_disk),
            number(naive_disk),
            number(naive_disk),
            ratio(per_event_disk, naive_disk),
            ratio(per_event_disk, naive_disk),
        ],
        [
            "Parquet files",
            f"{result.sealed_files:,}",
            f"{result.naive_files:,}",
            f"{result.naive_files:,}",
            "",
            "",
        ],
        ["write-ahead log bytes per event", number(result.wal_bytes / events), "", "", "", ""],
    ]


def end_to_end_table(results: Sequence[EndToEndResult]) -> Table:
    """Rows of the end-to-end runs, one column per run."""

    def row(label: str, cell: Callable[[EndToEndResult], str]) -> list[str]:
        return [label, *(cell(result) for result in results)]

    def share(cpu_s: float, window_s: float) -> str:
        return f"{number(100 * cpu_s / window_s, 2)} %"

    return [
        row("symbols / connections", lambda r: f"{r.symbols} / {r.connections}"),
        row("measurement window (s)", lambda r: number(r.window_s)),
        row(
            "simulator ticks per second, achieved / due",
            lambda r: (
                f"{number(per_second(r.ticks_in_window, r.window_s))} / {number(r.speed / 2)}"
            ),
        ),
        row(
            "events sent per second (simulator)",
            lambda r: number(per_second(r.delivered_in_window, r.window_s)),
        ),
        row(
            "events recorded per second (dataset)",
            lambda r: number(per_second(r.recorded_in_window, r.window_s)),
        ),
        row(
            "recorder CPU µs per event",
            lambda r: number(micros_per_item(r.recorder_cpu_s, max(1, r.recorded_in_window))),
        ),
        row("recorder CPU, share of one core", lambda r: share(r.recorder_cpu_s, r.window_s)),
        row("simulator CPU, share of one core", lambda r: share(r.simulator_cpu_s, r.window_s)),
        row(
            "recorder CPU over its whole life, start and stop included (s)",
            lambda r: number(r.exit.cpu_s),
        ),
        row(
            "recorder peak RSS (MiB), end of window / whole life",
            lambda r: (
                f"{number(r.recorder_peak_rss_bytes / MIB)} / {number(r.exit.peak_rss_bytes / MIB)}"
            ),
        ),
        row(
            "stop: SIGTERM to exit (s), exit code",
            lambda r: f"{number(r.exit.stop_s, 2)}, {r.exit.exit_code}",
        ),
        row(
            "rows recorded / events delivered / duplicates",
            lambda r: f"{r.recorded_total:,} / {r.delivered_total:,} / {r.duplicate_rows}",
        ),
        row("every delivered event recorded once", lambda r: "yes" if r.complete else "**no**"),
        row("frames rejected", lambda r: "?" if r.rejected is None else f"{r.rejected:,}"),
        row("gap records by cause", lambda r: describe_causes(r.gaps_by_cause)),
        row("Parquet files", lambda r: f"{r.files:,}"),
        row(
            "Parquet bytes per event",
            lambda r: number(r.parquet_bytes / r.recorded_total) if r.recorded_total else "n/a",
        ),
    ]


def describe_causes(causes: dict[str, int]) -> str:
    """Write gap counts as ``1,200 quiet``, or ``none``."""
    return ", ".join(f"{count:,} {cause}" for cause, count in causes.items()) or "none"


@dataclass(slots=True)
class Report:
    """Everything one run measured, for the Markdown tables and the JSON file.

    Attributes:
        machine: where it ran.
        plan: how much work each benchmark did.
        decode: the decode benchmark, per frame form.
        storage: the storage benchmark.
        end_to_end: the end-to-end runs.
        tables: the rendered tables, by section.
    """

    machine: Machine
    plan: Plan
    decode: list[DecodeResult] = field(default_factory=list)
    storage: StorageResult | None = None
    end_to_end: list[EndToEndResult] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """Render the report as Markdown, building :attr:`tables`."""
        sections = [f"Machine: {self.machine.describe()}."]
        if self.decode:
            self.tables["decode"] = markdown(DECODE_HEADER, decode_table(self.decode))
            sections.append("## Decode (in-process, wall clock)\n\n" + self.tables["decode"])
        if self.storage is not None:
            storage = self.storage
            self.tables["storage"] = markdown(STORAGE_HEADER, storage_table(storage))
            sections.append(
                f"## Storage ({storage.symbols} symbols, {storage.flushes:,} flushes, "
                f"{storage.events:,} events)\n\n" + self.tables["storage"]
            )
        if self.end_to_end:
            header = [
                "measure",
                *(f"{r.scenario} (speed {number(r.speed, 2)})" for r in self.end_to_end),
            ]
            self.tables["end_to_end"] = markdown(header, end_to_end_table(self.end_to_end))
            sections.append("## End to end over loopback\n\n" + self.tables["end_to_end"])
        return "\n\n".join(sections)

    def summary(self) -> dict[str, float | bool]:
        """The headline figures, unrounded and flat, for scripts that track them over time."""
        figures: dict[str, float | bool] = {}
        for result in self.decode:
            key = "decode_" + result.form.replace("-", "_").replace(" ", "_")
            figures[f"{key}_us_per_event"] = micros_per_item(result.recorder.wall_s, result.events)
            figures[f"{key}_baseline_us_per_event"] = micros_per_item(
                result.baseline.wall_s, result.events
            )
            figures[f"{key}_cost_ratio"] = result.cost_ratio
        storage = self.storage
        if storage is not None:
            figures |= {
                "storage_cpu_us_per_event": micros_per_item(storage.recorder.cpu_s, storage.events),
                "storage_naive_cpu_us_per_event": micros_per_item(
                    storage.naive.cpu_s, storage.events
                ),
                "storage_naive_fsync_cpu_us_per_event": micros_per_item(
                    storage.naive_fsync.cpu_s, storage.events
                ),
                "storage_parquet_bytes_per_event": storage.sealed_bytes / storage.events,
                "storage_naive_bytes_per_event": storage.naive_bytes / storage.events,
                "storage_wal_bytes_per_event": storage.wal_bytes / storage.events,
            }
        for run in self.end_to_end:
            key = f"e2e_{run.scenario}"
            figures |= {
                f"{key}_recorded_per_s": per_second(run.recorded_in_window, run.window_s),
                f"{key}_sent_per_s": per_second(run.delivered_in_window, run.window_s),
                f"{key}_cpu_us_per_event": micros_per_item(
                    run.recorder_cpu_s, max(1, run.recorded_in_window)
                ),
                f"{key}_cpu_share": run.recorder_cpu_s / run.window_s,
                f"{key}_simulator_cpu_share": run.simulator_cpu_s / run.window_s,
                f"{key}_peak_rss_mib": run.exit.peak_rss_bytes / MIB,
                f"{key}_complete": run.complete,
            }
        return figures


def progress(message: str) -> None:
    """Tell the operator what is running; on stderr, so stdout stays the report."""
    print(f"benchmark: {message}", file=sys.stderr, flush=True)


SECTIONS = ("decode", "storage", "e2e")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small workloads, about 30 s; checks the script, too short for figures",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--tmp-dir", type=Path, metavar="DIR", help="scratch directory (default: the system's)"
    )
    parser.add_argument(
        "--stress-speed", type=float, metavar="X", help="speed factor of the stress run"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable)"
    )
    return parser.parse_args(argv)


def run(plan: Plan, sections: Sequence[str], scratch: Path) -> Report:
    """Run the chosen benchmarks inside ``scratch``."""
    report = Report(machine=describe_machine(scratch), plan=plan)
    if "decode" in sections:
        progress(f"decode: {plan.decode_ticks} ticks of {plan.symbols} symbols")
        report.decode = bench_decode(plan)
    if "storage" in sections:
        progress(f"storage: {plan.storage_flushes} flushes of {plan.symbols} events")
        report.storage = bench_storage(plan, scratch)
    if "e2e" in sections:
        progress(
            f"end to end: {plan.realistic_seconds:g} s at speed 1, "
            f"{plan.stress_seconds:g} s at speed {plan.stress_speed:g}"
        )
        report.end_to_end = bench_end_to_end(plan, scratch)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, print the Markdown report, and write JSON if asked."""
    arguments = parse_arguments(argv)
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    if arguments.stress_speed is not None:
        plan = dataclasses.replace(plan, stress_speed=arguments.stress_speed)
    sections = arguments.only or SECTIONS
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recorder-benchmark-", dir=arguments.tmp_dir) as tmp:
        report = run(plan, sections, Path(tmp))
    print(report.render())
    progress(f"done in {time.perf_counter() - started:.0f} s")
    if arguments.json is not None:
        document = {"summary": report.summary(), **asdict(report)}
        arguments.json.write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
