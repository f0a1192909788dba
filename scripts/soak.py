"""Soak the recorder's write path at Binance's real pace, fast-forwarded on a fake clock.

What it drives: the same per-flush steps as ``recorder.flush.StorageFlush.write``, and the
service's publisher, with the real classes and real files in a temporary directory:

1. ``EventPipeline.feed`` (decode, de-duplication, gap detector) for every frame of the second,
   as the service's consumer task does between two flush ticks (timed apart: *ingest*);
2. at each 1 s tick, timed as one *flush*: ``QuarantineLog.add``, ``GapLog.append`` and
   ``GapLog.flush``, ``DatasetWriter.write_ahead``, ``write_state`` (the newest durable ``E``
   of 600 symbols), the *hand-over* (``DatasetWriter.finish_seals`` of what the publisher
   finished, ``DatasetWriter.take_seal_jobs`` for it), ``QuarantineLog.flush``;
3. beside the flushes, in a thread of its own, the *publisher*: ``DatasetWriter.publish`` of one
   job at a time, resting as long as each took (``recorder.service.SEAL_REST_RATIO``), as the
   service's publisher task does;
4. at the end the publisher's last results and ``DatasetWriter.close`` (the stop's final
   seal), timed apart.

The writer is built as the service builds it, from the settings' defaults (``max_file_age`` 1
h, ``max_file_bytes`` 128 MiB, ``day_grace`` 10 s, and the shares of ``buffer_budget`` of
:class:`recorder.storage.budgets.WriterBudgets`). Its clock is a :class:`FastForwardClock`:
after each second of simulated traffic both its monotonic and its wall clock jump by 1 s, then
the flush runs. Nothing in the flush loop sleeps, so an hour of traffic takes as long as the
CPU and the disk need for it; the publisher works (and rests) in real time meanwhile, so a
rotation takes more simulated time here than in a recorder, and its jobs hold their rows in
memory that much longer. Between two jumps the clock runs at the real pace (a
:class:`recorder.clock.ManualClock` would stand still); a second whose work took longer than 1
s moves the clock by that time, as a slow flush delays a real one.

The traffic: ``--symbols`` contracts (``SYM0001USDT``...) on combined frames, 200 streams per
connection, from the simulator's own generator (:class:`recorder.simulate.market.MarketGenerator`,
seed 7, every price profile, half with ``ps``/``st``). Each symbol sends one event every 2 s of
simulated time (``--activity`` 1.0: every tick changes), half of the symbols on even seconds
and half on odd ones, so each flush carries ``symbols / 2`` events. ``E`` follows the simulated
wall clock (tick time plus up to 150 ms of jitter), ``receive_time`` is ``E`` + 50 ms. The
default start, 22:50 UTC, puts the first hourly rotation (a full hour of rows per partition)
at 23:50 and the day end (midnight plus the 10 s grace: every partition of the day is sealed)
at 00:00:10, inside the default 1.25 h.

What it measures:

* each flush's wall time (``time.perf_counter``) and CPU time (``time.process_time``, every
  thread). The clock is fake, so the flush-to-flush gap a real recorder would see is not
  observed: the service starts the next flush at the next tick, or at once after a flush that
  took longer than the interval, so the worst gap is ``max(1 s, longest flush)``;
* every flush that took back published files, grouped into episodes by main reason
  (``age``: the hourly rotation, ``day_end``, ``budget``...; flushes at most 60 simulated
  seconds apart): the flushes, files, rows and bytes, the summed and the longest publication
  (in the publisher thread), and the resident set before and after;
* the resident set after every flush (``/proc/self/statm``) and its high-water mark
  (``getrusage``: it also catches the peak inside a seal), sampled every ``--sample-every``
  simulated seconds for the report and the JSON;
* bytes per event of the published Parquet files, and CPU per event of ingest and of the write
  path. The generator's own time is excluded from every figure (reported as simulator time).

Usage::

    .venv/bin/python scripts/soak.py [--symbols 600] [--hours 1.25] [--sample-every 60]
        [--start 2026-01-15T22:50:00Z] [--tmp-dir DIR] [--json FILE] [--keep]

It prints Markdown tables to stdout and progress to stderr. ``docs/performance.md`` ("Soak at
the real pace") records a run and explains the figures.
"""

import argparse
import array
import dataclasses
import datetime as dt
import importlib.metadata
import itertools
import json
import math
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import recorder
from recorder.clock import format_utc_ms, parse_utc_us
from recorder.gaps.detector import GapDetector
from recorder.gaps.log import GapLog
from recorder.gaps.state import write_state
from recorder.ingest.pipeline import EventPipeline, FlushBatch
from recorder.model import ConnectionChange, ConnectionEvent, ReceivedFrame
from recorder.service import SEAL_REST_RATIO
from recorder.settings.sections import GapSettings, SourceSettings, StorageSettings
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.market import MarketGenerator, encode_json
from recorder.storage.budgets import WriterBudgets
from recorder.storage.publisher import SealedFile
from recorder.storage.quarantine import QuarantineLog
from recorder.storage.seal_jobs import SealJob, SealResult
from recorder.storage.writer import DatasetWriter
from recorder.symbols import stream_name

SEED = 7
INSTANCE_ID = "soak"
TICK_MS = 2_000
"""Binance's update interval: each symbol sends one event per tick."""
JITTER_MS = 150
LATENCY_MS = 50
"""``receive_time`` minus ``E`` of every simulated frame."""
DEFAULT_START = "2026-01-15T22:50:00Z"
MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROGRESS_EVERY_S = 300
"""Simulated seconds between two progress lines."""


# ---------------------------------------------------------------------------------------------
# Measuring


def current_rss() -> int:
    """Return this process's resident set now, in bytes (``/proc/self/statm``)."""
    fields = Path("/proc/self/statm").read_text(encoding="ascii").split()
    return int(fields[1]) * PAGE_SIZE


def peak_rss() -> int:
    """Return this process's resident-set high-water mark, in bytes (``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def percentile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank ``q``-th percentile of ``values`` (``nan`` when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Return the least-squares slope of ``ys`` against ``xs``; ``None`` with too few points."""
    if len(xs) < 3 or len(set(xs)) < 2:
        return None
    return statistics.linear_regression(xs, ys).slope


@dataclass(slots=True)
class Sample:
    """The state of the process after one flush, every ``--sample-every`` simulated seconds.

    Attributes:
        sim_s: simulated seconds since the start.
        rss_bytes: resident set now.
        peak_rss_bytes: resident-set high-water mark so far.
        arrow_bytes: bytes allocated by pyarrow's memory pool.
        python_blocks: memory blocks the interpreter has allocated (``sys.getallocatedblocks``).
        buffered_rows: rows logged and not yet in a sealed file.
        buffered_bytes: Arrow bytes of those rows.
        open_partitions: partitions with buffered rows.
        wal_bytes: write-ahead segment bytes held.
        flush_max_s: the longest flush since the previous sample.
        flush_p50_s: the median flush since the previous sample.
    """

    sim_s: int
    rss_bytes: int
    peak_rss_bytes: int
    arrow_bytes: int
    python_blocks: int
    buffered_rows: int
    buffered_bytes: int
    open_partitions: int
    wal_bytes: int
    flush_max_s: float
    flush_p50_s: float


EPISODE_GAP_S = 60
"""Sealing flushes of one reason at most this many simulated seconds apart form one episode."""


@dataclass(slots=True)
class SealEpisode:
    """A run of flushes that took back published files for one main reason.

    The writer may spread a rotation or a day end over many flushes, and may seal for its
    memory budget at any flush: each call joins the episode of the reason of most of its files
    when that episode's last call is at most :data:`EPISODE_GAP_S` simulated seconds old.

    Attributes:
        reason: the main seal reason (``age``: the hourly rotation, ``day_end``, ``budget``...).
        first_s: simulated seconds since the start at its first sealing flush.
        last_s: the same at its last one.
        first_utc: the simulated wall clock at its first sealing flush.
        last_utc: the same at its last one.
        calls: flushes that took back published files.
        files: files by seal reason.
        rows: rows in them.
        bytes: their size.
        seal_sum_s: wall time of publishing those files (in the publisher thread), added up.
        seal_max_s: the longest of them.
        flush_max_s: the longest whole flush among them.
        cpu_s: CPU time of those flushes (the rest of a flush is a few milliseconds).
        rss_before_bytes: resident set after the flush before the first call.
        rss_after_bytes: resident set after the last call.
        peak_rss_before_bytes: high-water mark before the first call.
        peak_rss_after_bytes: high-water mark after the last: above the former, sealing set
            a new peak.
    """

    reason: str
    first_s: int
    last_s: int
    first_utc: str
    last_utc: str
    calls: int = 0
    files: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    bytes: int = 0
    seal_sum_s: float = 0.0
    seal_max_s: float = 0.0
    flush_max_s: float = 0.0
    cpu_s: float = 0.0
    rss_before_bytes: int = 0
    rss_after_bytes: int = 0
    peak_rss_before_bytes: int = 0
    peak_rss_after_bytes: int = 0

    def add(
        self,
        sealed: Sequence[SealedFile],
        publish_s: Sequence[float],
        flush_s: float,
        cpu_s: float,
    ) -> None:
        """Count one flush that took back ``sealed``, published in ``publish_s`` each."""
        self.calls += 1
        for file in sealed:
            self.files[str(file.reason)] = self.files.get(str(file.reason), 0) + 1
        self.rows += sum(file.rows for file in sealed)
        self.bytes += sum(file.size_bytes for file in sealed)
        self.seal_sum_s += sum(publish_s)
        self.seal_max_s = max(self.seal_max_s, *publish_s, 0.0)
        self.flush_max_s = max(self.flush_max_s, flush_s)
        self.cpu_s += cpu_s


STEPS = ("gap_log", "write_ahead", "state", "hand_over", "quarantine")
"""The steps of one flush, in the service's order."""


@dataclass(slots=True)
class StepTimes:
    """Wall seconds of each flush and of each of its steps, one entry per flush.

    Attributes:
        total: wall seconds of each whole flush.
        steps: wall seconds of each step (:data:`STEPS`) of each flush.
        cpu: CPU seconds of each step, summed over the run.
    """

    total: "array.array[float]" = field(default_factory=lambda: array.array("d"))
    steps: "dict[str, array.array[float]]" = field(
        default_factory=lambda: {step: array.array("d") for step in STEPS}
    )
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))

    def record(self, marks: Sequence[tuple[float, float]]) -> None:
        """Record one flush from its ``(perf_counter, process_time)`` marks around each step."""
        self.total.append(marks[-1][0] - marks[0][0])
        for step, (start, end) in zip(STEPS, itertools.pairwise(marks), strict=True):
            self.steps[step].append(end[0] - start[0])
            self.cpu[step] += end[1] - start[1]


@dataclass(slots=True)
class Totals:
    """Counters over the whole run.

    Attributes:
        events: events written (durable in the log, then sealed).
        gaps: gap records detected.
        rejections: frames or events rejected (expected 0).
        flush_cpu_s: CPU time of every flush (the publisher thread's included: CPU time is the
            process's).
        ingest_cpu_s: CPU time of ``EventPipeline.feed`` over every frame.
        ingest_wall_s: wall time of the same.
        generate_wall_s: wall time of the simulator's generator and frame building.
        peak_wal_bytes: the largest write-ahead log held.
        peak_buffered_rows: the most rows buffered at once.
        peak_held_bytes: the most Arrow bytes of durable rows held in memory at once.
        peak_spilled_bytes: the most Arrow bytes of durable rows in spill files at once.
    """

    events: int = 0
    gaps: int = 0
    rejections: int = 0
    flush_cpu_s: float = 0.0
    ingest_cpu_s: float = 0.0
    ingest_wall_s: float = 0.0
    generate_wall_s: float = 0.0
    peak_wal_bytes: int = 0
    peak_buffered_rows: int = 0
    peak_held_bytes: int = 0
    peak_spilled_bytes: int = 0


# ---------------------------------------------------------------------------------------------
# Fast-forwarded time


class FastForwardClock:
    """Simulated time: jumps by :meth:`advance`, and runs at the real pace in between.

    Both readings are the simulated time of the last jump plus the real seconds
    (``time.perf_counter``) spent since; a jump never moves them backwards.

    Args:
        wall_us: the simulated wall clock at the start, microseconds since the epoch.
    """

    def __init__(self, wall_us: int) -> None:
        self._monotonic = 0.0
        self._wall_us = wall_us
        self._since = time.perf_counter()

    def _running(self) -> float:
        return time.perf_counter() - self._since

    def monotonic(self) -> float:
        """Return simulated monotonic seconds."""
        return self._monotonic + self._running()

    def wall_us(self) -> int:
        """Return the simulated wall clock, microseconds since the epoch."""
        return self._wall_us + round(self._running() * 1_000_000)

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` ahead of the last jump, or to now if more than that has passed."""
        step = max(seconds, self._running())
        self._monotonic += step
        self._wall_us += round(step * 1_000_000)
        self._since = time.perf_counter()


# ---------------------------------------------------------------------------------------------
# The recorder's write path, driven as the service drives it


def _mark() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def writer_options(storage: StorageSettings) -> dict[str, Any]:
    """Return the writer's limits from the default settings, as ``RecorderService`` passes them."""
    return {
        "max_file_age": storage.max_file_age,
        "max_file_bytes": storage.max_file_bytes,
        "day_grace_ms": round(storage.day_grace * 1000),
        "buffer_budget": WriterBudgets.of(storage.buffer_budget).seal,
        "publish_budget": WriterBudgets.of(storage.buffer_budget).publish,
    }


class WritePath:
    """The storage objects of one recorder instance and its per-flush steps.

    Args:
        root: the dataset root.
        symbols: the recorded symbols.
        clock: the fake clock of the writer.
        publish_delay: extra wall seconds the publisher takes per file.
        spill: with the service's publish budget (so spill files when publication lags).
    """

    def __init__(
        self,
        root: Path,
        symbols: tuple[str, ...],
        clock: FastForwardClock,
        publish_delay: float = 0.0,
        *,
        spill: bool = True,
    ) -> None:
        self.root = root
        self.symbols = symbols
        self.clock = clock
        self.writer_options = writer_options(StorageSettings())
        if not spill:
            self.writer_options["publish_budget"] = None
        self.writer = DatasetWriter(
            root, instance_id=INSTANCE_ID, clock=clock, **self.writer_options
        )
        self.gap_log = GapLog(root, INSTANCE_ID)
        self.quarantine = QuarantineLog(root, INSTANCE_ID)
        self.publisher = Publisher(self.writer, publish_delay)
        self.last_durable: dict[str, int] = {}
        self.pipeline = EventPipeline(
            frozenset(symbols),
            SourceSettings().max_frame_bytes,
            GapDetector(GapSettings().interval_ms),
        )

    def flush(self, batch: FlushBatch, times: StepTimes) -> list[SealedFile]:
        """Run the storage steps of one flush in the service's order; time each of them.

        Unlike the service, a failing step raises: a soak on a healthy disk has no failures.

        Returns:
            The files the publisher finished since the last flush (their SEALED records are
            logged now).
        """
        marks = [_mark()]
        self.quarantine.add(batch.rejections)
        self.gap_log.append(batch.gaps)
        self.gap_log.flush()
        marks.append(_mark())
        unstorable = self.writer.write_ahead(batch.events)
        marks.append(_mark())
        self.quarantine.add(unstorable)
        durable = self.writer.take_durable()
        for symbol, rows in durable.items():
            self.last_durable[symbol] = rows.last_ms
        if durable:
            wall_us = self.clock.wall_us()
            write_state(self.root, INSTANCE_ID, self.last_durable, self.symbols, wall_us=wall_us)
        marks.append(_mark())
        sealed = self.writer.finish_seals(self.publisher.take_results())
        self.publisher.submit(self.writer.take_seal_jobs())
        marks.append(_mark())
        self.quarantine.flush()
        marks.append(_mark())
        times.record(marks)
        return sealed


class Publisher:
    """The service's publisher: one thread, one file at a time, resting as long as each took.

    Args:
        writer: the writer whose jobs it publishes.
        delay: extra wall seconds each file takes (a slow disk), rest included.
    """

    def __init__(self, writer: DatasetWriter, delay: float = 0.0) -> None:
        self._writer = writer
        self._delay = delay
        self._queue: queue.SimpleQueue[SealJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._results: list[SealResult] = []
        self.durations: dict[Path, float] = {}
        """Wall seconds of each publication, by the file published."""
        self._thread = threading.Thread(target=self._work, name="publisher", daemon=True)
        self._thread.start()

    def submit(self, jobs: Sequence[SealJob]) -> None:
        """Queue ``jobs`` for publication."""
        for job in jobs:
            self._queue.put(job)

    def take_results(self) -> list[SealResult]:
        """The results finished since the last call."""
        with self._lock:
            results, self._results = self._results, []
        return results

    def stop(self) -> None:
        """Finish the file being written, drop the queue and end the thread."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            started = time.perf_counter()
            result = self._writer.publish(job)
            time.sleep(self._delay)
            elapsed = time.perf_counter() - started
            with self._lock:
                self._results.append(result)
                if result.sealed is not None:
                    self.durations[result.sealed.path] = elapsed
            time.sleep(elapsed * SEAL_REST_RATIO)


# ---------------------------------------------------------------------------------------------
# The simulated market


@dataclass(frozen=True, slots=True)
class Plan:
    """What one soak run does.

    Attributes:
        symbols: how many contracts.
        seconds: simulated seconds, one flush each.
        start_ms: simulated wall clock at the start, ms since the epoch.
        sample_every: simulated seconds between two samples.
        warmup: simulated seconds left out of the steady and growth figures.
        activity: probability that a symbol changes in its tick.
        max_streams: streams per connection.
        publish_delay: extra wall seconds the publisher takes per file, a slow disk.
        spill: with the service's publish budget (and so spill files); without, the design
            before them.
    """

    symbols: int
    seconds: int
    start_ms: int
    sample_every: int
    warmup: int
    activity: float
    max_streams: int
    publish_delay: float = 0.0
    spill: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """The contracts: ``SYM0001USDT``, ``SYM0002USDT``..."""
        return tuple(f"SYM{number:04d}USDT" for number in range(1, self.symbols + 1))


class Market:
    """Frames of the simulated market, one simulated second at a time.

    Two generators, each with half of the symbols and a 2 s tick, started 1 s apart: every
    symbol sends every 2 s and every second carries half of the symbols.
    """

    def __init__(self, plan: Plan) -> None:
        names = plan.names
        self.connection_of = {
            symbol: f"{index // plan.max_streams}.1" for index, symbol in enumerate(names)
        }
        self.generators = [
            MarketGenerator(
                SimulatorConfig(
                    symbols=half,
                    seed=SEED,
                    interval_ms=TICK_MS,
                    jitter_ms=JITTER_MS,
                    activity=plan.activity,
                ),
                plan.start_ms + phase * 1_000,
            )
            for phase, half in enumerate((names[0::2], names[1::2]))
        ]
        self.stream_names = {symbol: encode_json(stream_name(symbol)) for symbol in names}

    def connection_events(self, clock: FastForwardClock) -> list[ConnectionEvent]:
        """The ``opened`` events of the connections, as the source queues them first."""
        carried: dict[str, list[str]] = {}
        for symbol, connection in self.connection_of.items():
            carried.setdefault(connection, []).append(symbol)
        return [
            ConnectionEvent(
                ConnectionChange.OPENED,
                connection,
                tuple(symbols),
                clock.monotonic(),
                clock.wall_us(),
            )
            for connection, symbols in carried.items()
        ]

    def frames(self, second: int) -> list[ReceivedFrame]:
        """Return the frames whose ``E`` falls in simulated second ``second``."""
        tick = self.generators[second % 2].step()
        return [
            ReceivedFrame(
                f'{{"stream":{self.stream_names[event.symbol]},"data":{event.payload_json}}}',
                (event.event_time + LATENCY_MS) * 1000,
                self.connection_of[event.symbol],
            )
            for event in tick.events
        ]


# ---------------------------------------------------------------------------------------------
# The run


@dataclass(slots=True)
class Result:
    """Everything one soak run measured.

    Attributes:
        plan: what was run.
        wall_s: wall time of the whole run.
        times: per-flush step durations.
        totals: counters.
        samples: the process state every ``sample_every`` simulated seconds.
        writer_options: the limits the writer was built with.
        seals: the seal episodes, in the order they started.
        sealing_flushes: 1 for each flush that took back published files, else 0.
        rss_start_bytes: resident set after ``open``, before the first event.
        close_s: wall time of the final ``close``.
        close_cpu_s: its CPU time.
        close_files: files it published.
        close_peak_rss_bytes: high-water mark after it.
        clock_drift_s: how far the clock ran ahead of one second per flush (slow seconds).
        parquet_files: data files in the dataset at the end.
        parquet_bytes: their total size.
        parquet_rows: rows in them (read from their footers).
    """

    plan: Plan
    wall_s: float = 0.0
    times: StepTimes = field(default_factory=StepTimes)
    totals: Totals = field(default_factory=Totals)
    samples: list[Sample] = field(default_factory=list)
    writer_options: dict[str, Any] = field(default_factory=dict)
    seals: list[SealEpisode] = field(default_factory=list)
    sealing_flushes: bytearray = field(default_factory=bytearray)
    rss_start_bytes: int = 0
    close_s: float = 0.0
    close_cpu_s: float = 0.0
    close_files: int = 0
    close_peak_rss_bytes: int = 0
    clock_drift_s: float = 0.0
    parquet_files: int = 0
    parquet_bytes: int = 0
    parquet_rows: int = 0


class Soak:
    """One run: the market, the write path, and the bookkeeping of what they cost."""

    def __init__(self, plan: Plan, root: Path) -> None:
        self.plan = plan
        self.clock = FastForwardClock(wall_us=plan.start_ms * 1000)
        self.market = Market(plan)
        self.path = WritePath(root, plan.names, self.clock, plan.publish_delay, spill=plan.spill)
        self.result = Result(plan, writer_options=self.path.writer_options)
        self._last_rss = 0
        self._sample_from = 0
        self._started = time.perf_counter()
        self._open_episodes: dict[str, SealEpisode] = {}

    def run(self) -> Result:
        """Open the writer, run every simulated second, close, and check the dataset."""
        self._started = time.perf_counter()
        self.path.writer.open()
        for event in self.market.connection_events(self.clock):
            self.path.pipeline.feed(event)
        self._last_rss = self.result.rss_start_bytes = current_rss()
        for second in range(self.plan.seconds):
            self._one_second(second)
        for episode in self._open_episodes.values():
            self._report_episode(episode)
        self.result.clock_drift_s = self.clock.monotonic() - self.plan.seconds
        self._close()
        self.result.wall_s = time.perf_counter() - self._started
        return self.result

    def _one_second(self, second: int) -> None:
        totals = self.result.totals
        generating = time.perf_counter()
        frames = self.market.frames(second)
        wall, cpu = time.perf_counter(), time.process_time()
        totals.generate_wall_s += wall - generating
        for frame in frames:
            self.path.pipeline.feed(frame)
        totals.ingest_wall_s += time.perf_counter() - wall
        totals.ingest_cpu_s += time.process_time() - cpu
        self.clock.advance(1.0)
        batch = self.path.pipeline.take()
        totals.events += len(batch.events)
        totals.gaps += len(batch.gaps)
        totals.rejections += len(batch.rejections)
        peak_before = peak_rss()
        cpu = time.process_time()
        sealed = self.path.flush(batch, self.result.times)
        flush_cpu = time.process_time() - cpu
        totals.flush_cpu_s += flush_cpu
        rss = current_rss()
        writer = self.path.writer
        totals.peak_wal_bytes = max(totals.peak_wal_bytes, writer.wal_bytes)
        totals.peak_held_bytes = max(totals.peak_held_bytes, writer.buffered_bytes)
        totals.peak_spilled_bytes = max(totals.peak_spilled_bytes, writer.spilled_bytes)
        self.result.sealing_flushes.append(1 if sealed else 0)
        if sealed:
            self._record_seal(second, sealed, flush_cpu, rss, peak_before)
        else:
            totals.peak_buffered_rows = max(totals.peak_buffered_rows, writer.buffered_rows)
        self._last_rss = rss
        elapsed = second + 1
        if elapsed % self.plan.sample_every == 0 or elapsed == self.plan.seconds:
            self._sample(elapsed, rss)
        if elapsed % PROGRESS_EVERY_S == 0:
            self._progress(elapsed, rss)

    def _record_seal(
        self, second: int, sealed: list[SealedFile], cpu_s: float, rss: int, peak_before: int
    ) -> None:
        times = self.result.times
        elapsed = second + 1
        now_utc = format_utc_ms(self.clock.wall_us() // 1000)
        reasons = Counter(str(file.reason) for file in sealed)
        reason = max(sorted(reasons), key=lambda name: reasons[name])
        episode = self._open_episodes.get(reason)
        if episode is None or elapsed - episode.last_s > EPISODE_GAP_S:
            if episode is not None:
                self._report_episode(episode)
            episode = SealEpisode(
                reason=reason,
                first_s=elapsed,
                last_s=elapsed,
                first_utc=now_utc,
                last_utc=now_utc,
                rss_before_bytes=self._last_rss,
                peak_rss_before_bytes=peak_before,
            )
            self._open_episodes[reason] = episode
            self.result.seals.append(episode)
        durations = self.path.publisher.durations
        publish_s = [durations.pop(file.path, math.nan) for file in sealed]
        episode.add(sealed, publish_s, times.total[-1], cpu_s)
        episode.last_s = elapsed
        episode.last_utc = now_utc
        episode.rss_after_bytes = rss
        episode.peak_rss_after_bytes = peak_rss()

    def _report_episode(self, episode: SealEpisode) -> None:
        print(
            f"  sealed {sum(episode.files.values())} files ({episode.files}) from "
            f"{episode.first_utc} to {episode.last_utc} in {episode.calls} flushes, "
            f"{episode.seal_sum_s:.2f} s in all, {episode.seal_max_s:.2f} s at most",
            file=sys.stderr,
        )

    def _sample(self, elapsed: int, rss: int) -> None:
        writer = self.path.writer
        recent = self.result.times.total[self._sample_from :]
        self._sample_from = len(self.result.times.total)
        self.result.samples.append(
            Sample(
                sim_s=elapsed,
                rss_bytes=rss,
                peak_rss_bytes=peak_rss(),
                arrow_bytes=pa.total_allocated_bytes(),
                python_blocks=sys.getallocatedblocks(),
                buffered_rows=writer.buffered_rows,
                buffered_bytes=writer.buffered_bytes,
                open_partitions=writer.open_partitions,
                wal_bytes=writer.wal_bytes,
                flush_max_s=max(recent, default=math.nan),
                flush_p50_s=percentile(recent, 50),
            )
        )

    def _progress(self, elapsed: int, rss: int) -> None:
        print(
            f"simulated {elapsed / 3600:6.2f} h ({format_utc_ms(self.clock.wall_us() // 1000)}): "
            f"RSS {rss / MIB:7.1f} MiB, {self.path.writer.buffered_rows:>9,} rows buffered, "
            f"{self.result.totals.events:>11,} events, "
            f"{time.perf_counter() - self._started:6.0f} s elapsed",
            file=sys.stderr,
        )

    def _close(self) -> None:
        result = self.result
        wall, cpu = time.perf_counter(), time.process_time()
        self.path.publisher.stop()
        sealed = self.path.writer.finish_seals(self.path.publisher.take_results())
        sealed += self.path.writer.close()
        result.close_s = time.perf_counter() - wall
        result.close_cpu_s = time.process_time() - cpu
        result.close_files = len(sealed)
        result.close_peak_rss_bytes = peak_rss()
        files = sorted(self.path.root.glob("date=*/symbol=*/*.parquet"))
        strays = [path for path in self.path.root.rglob("*.parquet") if path not in set(files)]
        if strays:
            raise RuntimeError(f"Parquet files outside the partitions: {strays[:3]}")
        result.parquet_files = len(files)
        result.parquet_bytes = sum(path.stat().st_size for path in files)
        result.parquet_rows = sum(pq.read_metadata(path).num_rows for path in files)
        if result.parquet_rows != result.totals.events:
            raise RuntimeError(
                f"the dataset holds {result.parquet_rows} rows, {result.totals.events} were written"
            )


# ---------------------------------------------------------------------------------------------
# Figures


def rss_figures(result: Result) -> dict[str, float | None]:
    """Derive the memory figures from the samples and the seal episodes (bytes, bytes/hour)."""
    plan = result.plan
    samples = result.samples
    after_warmup = [s for s in samples if s.sim_s >= plan.warmup]
    first_seal = result.seals[0].first_s if result.seals else plan.seconds + 1
    # The buffering phase: after warm-up, before anything is sealed; RSS follows the rows.
    buffering = [s for s in after_warmup if s.sim_s < first_seal]
    growth = slope([s.sim_s for s in buffering], [s.rss_bytes for s in buffering])
    per_row = slope([s.buffered_rows for s in buffering], [s.rss_bytes for s in buffering])
    rotations = [seal for seal in result.seals if seal.reason == "age"]
    floor_growth = slope(
        [seal.last_s for seal in rotations], [seal.rss_after_bytes for seal in rotations]
    )
    largest = max(result.seals, key=lambda seal: seal.rows, default=None)
    return {
        "start": result.rss_start_bytes,
        "after_warmup": after_warmup[0].rss_bytes if after_warmup else None,
        "steady_median": statistics.median(s.rss_bytes for s in after_warmup)
        if after_warmup
        else None,
        "before_largest_seal": largest.rss_before_bytes if largest else None,
        "after_largest_seal": largest.rss_after_bytes if largest else None,
        "peak_sampled": max((s.rss_bytes for s in samples), default=None),
        "peak_hwm": max(result.close_peak_rss_bytes, *(s.peak_rss_bytes for s in samples)),
        "peak_hwm_before_close": max((s.peak_rss_bytes for s in samples), default=None),
        "growth_per_hour_buffering": growth * 3600 if growth is not None else None,
        "per_buffered_row": per_row,
        "floor_growth_per_hour": floor_growth * 3600 if floor_growth is not None else None,
    }


def summary(result: Result) -> dict[str, Any]:
    """Return the headline figures, unrounded."""
    times = result.times
    totals = result.totals
    events = totals.events
    sealing = result.sealing_flushes
    quiet = [total for total, sealed in zip(times.total, sealing, strict=True) if not sealed]
    write_cpu = totals.flush_cpu_s + result.close_cpu_s
    return {
        "symbols": result.plan.symbols,
        "simulated_hours": result.plan.seconds / 3600,
        "flushes": len(times.total),
        "events": events,
        "events_per_flush": events / max(len(times.total), 1),
        "run_wall_s": result.wall_s,
        "generator_wall_s": totals.generate_wall_s,
        "flush_p50_s": percentile(times.total, 50),
        "flush_p99_s": percentile(times.total, 99),
        "flush_p999_s": percentile(times.total, 99.9),
        "flush_max_s": max(times.total, default=math.nan),
        "quiet_flush_p99_s": percentile(quiet, 99),
        "quiet_flush_max_s": max(quiet, default=math.nan),
        "flushes_over_1s": sum(1 for total in times.total if total > 1.0),
        "worst_flush_gap_s": max(1.0, max(times.total, default=0.0)),
        "step_p50_s": {step: percentile(times.steps[step], 50) for step in STEPS},
        "step_p99_s": {step: percentile(times.steps[step], 99) for step in STEPS},
        "step_max_s": {step: max(times.steps[step], default=math.nan) for step in STEPS},
        "cpu_us_per_event_step": {
            step: cpu / max(events, 1) * 1e6 for step, cpu in times.cpu.items()
        },
        "close_s": result.close_s,
        "close_files": result.close_files,
        "parquet_files": result.parquet_files,
        "parquet_bytes": result.parquet_bytes,
        "parquet_bytes_per_event": result.parquet_bytes / max(events, 1),
        "peak_wal_bytes": totals.peak_wal_bytes,
        "peak_buffered_rows": totals.peak_buffered_rows,
        "peak_held_bytes": totals.peak_held_bytes,
        "peak_spilled_bytes": totals.peak_spilled_bytes,
        "wal_bytes_per_buffered_row": totals.peak_wal_bytes / max(totals.peak_buffered_rows, 1),
        "cpu_us_per_event_flush": totals.flush_cpu_s / max(events, 1) * 1e6,
        "cpu_us_per_event_close": result.close_cpu_s / max(events, 1) * 1e6,
        "cpu_us_per_event_write_path": write_cpu / max(events, 1) * 1e6,
        "cpu_us_per_event_ingest": totals.ingest_cpu_s / max(events, 1) * 1e6,
        "core_share_write_path": write_cpu / result.plan.seconds,
        "core_share_ingest": totals.ingest_cpu_s / result.plan.seconds,
        "clock_drift_s": result.clock_drift_s,
        "gaps": totals.gaps,
        "rejections": totals.rejections,
        "rss": rss_figures(result),
    }


def mib(value: float | None) -> str:
    """Format bytes as MiB, or a dash."""
    return "-" if value is None else f"{value / MIB:,.0f}"


def mib_change(value: float | None) -> str:
    """Format a signed change in bytes as MiB with one decimal, or a dash."""
    return "-" if value is None else f"{value / MIB:+,.1f}"


def limit(value: float | None) -> str:
    """Format a writer limit: sizes of a MiB or more in MiB, the rest as they are."""
    if value is None:
        return "none"
    if isinstance(value, int) and value >= MIB:
        return f"{value / MIB:g} MiB"
    return f"{value:g}"


def ms(seconds: float) -> str:
    """Format seconds as milliseconds with three significant figures."""
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1000:.3g} ms"


def headline_table(figures: dict[str, Any], result: Result) -> list[str]:
    """Render the headline figures as a Markdown table."""
    rss = figures["rss"]
    plan = result.plan
    end_ms = plan.start_ms + plan.seconds * 1000
    per_row = rss["per_buffered_row"]
    growth = rss["growth_per_hour_buffering"]
    floor = rss["floor_growth_per_hour"]
    rows = [
        (
            "symbols / flushes / events",
            f"{plan.symbols} / {figures['flushes']:,} / "
            f"{figures['events']:,} ({figures['events_per_flush']:.0f} per flush)",
        ),
        (
            "writer limits (the settings' defaults, as the service passes them)",
            ", ".join(f"{name} {limit(value)}" for name, value in result.writer_options.items()),
        ),
        (
            "simulated span (UTC); clock ahead of 1 s per flush at the end",
            f"{format_utc_ms(plan.start_ms)} to {format_utc_ms(end_ms)}; "
            f"{figures['clock_drift_s']:.1f} s",
        ),
        (
            "run time (wall), of which the simulator's generator",
            f"{figures['run_wall_s']:,.0f} s, {figures['generator_wall_s']:,.0f} s",
        ),
        (
            "flush duration p50 / p99 / p99.9 / max",
            f"{ms(figures['flush_p50_s'])} / {ms(figures['flush_p99_s'])} / "
            f"{ms(figures['flush_p999_s'])} / {ms(figures['flush_max_s'])}",
        ),
        (
            "flush duration without a seal: p99 / max",
            f"{ms(figures['quiet_flush_p99_s'])} / {ms(figures['quiet_flush_max_s'])}",
        ),
        ("flushes longer than the 1 s interval", f"{figures['flushes_over_1s']}"),
        (
            "implied worst flush-to-flush gap, max(1 s, longest flush)",
            ms(figures["worst_flush_gap_s"]),
        ),
        (
            "flush steps p50: gap log / write_ahead / state file / hand-over / quarantine",
            " / ".join(ms(figures["step_p50_s"][step]) for step in STEPS),
        ),
        (
            "flush steps p99: gap log / write_ahead / state file / hand-over / quarantine",
            " / ".join(ms(figures["step_p99_s"][step]) for step in STEPS),
        ),
        (
            "seal episodes (see below); final close",
            f"{len(result.seals)}; {ms(figures['close_s'])} for {figures['close_files']} files",
        ),
        (
            "RSS MiB: start / after warm-up / median after warm-up",
            f"{mib(rss['start'])} / {mib(rss['after_warmup'])} / {mib(rss['steady_median'])}",
        ),
        (
            "RSS MiB: before / after the largest seal",
            f"{mib(rss['before_largest_seal'])} / {mib(rss['after_largest_seal'])}",
        ),
        (
            "RSS MiB: peak sampled / high-water mark (ru_maxrss), close included",
            f"{mib(rss['peak_sampled'])} / {mib(rss['peak_hwm'])}",
        ),
        (
            "RSS growth while buffering: MiB per simulated hour / bytes per buffered row",
            f"{mib_change(growth)} / {'-' if per_row is None else f'{per_row:,.0f}'}",
        ),
        ("RSS after each rotation: growth per simulated hour (MiB)", mib_change(floor)),
        (
            "peak buffered rows / peak write-ahead log",
            f"{figures['peak_buffered_rows']:,} / {mib(figures['peak_wal_bytes'])} MiB "
            f"({figures['wal_bytes_per_buffered_row']:.0f} B per row)",
        ),
        (
            "peak Arrow bytes of durable rows: in memory / in spill files",
            f"{mib(figures['peak_held_bytes'])} / {mib(figures['peak_spilled_bytes'])} MiB",
        ),
        (
            "Parquet files / bytes per event",
            f"{figures['parquet_files']:,} / {figures['parquet_bytes_per_event']:.1f}",
        ),
        (
            "CPU µs per event: flushes / close / write path total",
            f"{figures['cpu_us_per_event_flush']:.1f} / {figures['cpu_us_per_event_close']:.1f} / "
            f"{figures['cpu_us_per_event_write_path']:.1f}",
        ),
        (
            "CPU µs per event by step: gap log / write_ahead / state / hand-over / quarantine",
            " / ".join(f"{figures['cpu_us_per_event_step'][step]:.1f}" for step in STEPS),
        ),
        (
            "CPU µs per event: ingest (decode, dedup, gaps)",
            f"{figures['cpu_us_per_event_ingest']:.1f}",
        ),
        (
            "share of one core at the real pace: write path / ingest",
            f"{figures['core_share_write_path']:.1%} / {figures['core_share_ingest']:.1%}",
        ),
        ("gap records / rejections", f"{figures['gaps']} / {figures['rejections']}"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


def seal_table(result: Result) -> list[str]:
    """Render every seal episode as a Markdown table."""
    lines = [
        "| simulated time (UTC) | files by reason | flushes | rows | MiB written | "
        "publication: sum / longest | CPU | RSS MiB before → after | "
        "high-water mark MiB before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seal in result.seals:
        files = ", ".join(f"{reason}: {count}" for reason, count in sorted(seal.files.items()))
        span = (
            seal.first_utc[:19]
            if seal.calls == 1
            else f"{seal.first_utc[:19]} to {seal.last_utc[11:19]}"
        )
        lines.append(
            f"| {span} | {files} | {seal.calls} | {seal.rows:,} | {seal.bytes / MIB:,.1f} | "
            f"{ms(seal.seal_sum_s)} / {ms(seal.seal_max_s)} | {ms(seal.cpu_s)} | "
            f"{mib(seal.rss_before_bytes)} → {mib(seal.rss_after_bytes)} | "
            f"{mib(seal.peak_rss_before_bytes)} → {mib(seal.peak_rss_after_bytes)} |"
        )
    return lines


def code_version() -> dict[str, str]:
    """Return the commit of the ``recorder`` package imported, and its uncommitted files."""
    package = Path(recorder.__file__).resolve().parent
    version = {"package": str(package)}
    try:
        for key, command in (
            ("commit", ["git", "rev-parse", "HEAD"]),
            ("uncommitted", ["git", "status", "--porcelain", "--", "."]),
        ):
            run = subprocess.run(
                command, cwd=package, capture_output=True, text=True, check=True, timeout=30
            )
            version[key] = run.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        version["git"] = f"unknown: {exc}"
    return version


def machine() -> dict[str, Any]:
    """Describe this machine, the library versions and the code measured."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "arrow_memory_pool": pa.default_memory_pool().backend_name,
        "msgspec": importlib.metadata.version("msgspec"),
        "recorder": recorder.__version__,
        "code": code_version(),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=600, help="contracts (default 600)")
    parser.add_argument("--hours", type=float, default=1.25, help="simulated hours (1.25)")
    parser.add_argument(
        "--start", default=DEFAULT_START, help=f"simulated UTC start (default {DEFAULT_START})"
    )
    parser.add_argument(
        "--sample-every", type=int, default=60, help="simulated seconds between samples (60)"
    )
    parser.add_argument(
        "--warmup", type=int, default=300, help="simulated seconds of warm-up (300)"
    )
    parser.add_argument(
        "--activity", type=float, default=1.0, help="chance a symbol changes per 2 s tick (1.0)"
    )
    parser.add_argument(
        "--publish-delay",
        type=float,
        default=0.0,
        help="extra wall seconds per published file, a slow disk; the rest doubles it (0)",
    )
    parser.add_argument(
        "--without-spill",
        action="store_true",
        help="no publish budget: every due partition handed over at once, none spilled "
        "(the design before spill files, for a baseline in the same run)",
    )
    parser.add_argument("--tmp-dir", type=Path, help="where the scratch dataset goes")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dataset")
    args = parser.parse_args(argv)
    if args.symbols < 2:
        parser.error("--symbols: at least 2 (half of them send on even seconds, half on odd)")
    if not 0 < args.activity <= 1:
        parser.error("--activity: a probability in (0, 1]")
    if args.hours * 3600 < 1 or args.sample_every < 1:
        parser.error("--hours and --sample-every must cover at least one second")
    return args


def check_coverage(plan: Plan) -> None:
    """Warn on stderr when the run misses the hourly rotation or the day end."""
    storage = StorageSettings()
    seconds = plan.seconds
    end_ms = plan.start_ms + seconds * 1000
    next_midnight = (plan.start_ms // 86_400_000 + 1) * 86_400_000
    if seconds < storage.max_file_age:
        print(
            f"warning: shorter than max_file_age ({storage.max_file_age:g} s): no rotation",
            file=sys.stderr,
        )
    if end_ms < next_midnight + storage.day_grace * 1000:
        print("warning: the run ends before the day end (midnight + day_grace)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, print the tables, write the JSON."""
    args = parse_args(argv)
    plan = Plan(
        symbols=args.symbols,
        seconds=round(args.hours * 3600),
        start_ms=parse_utc_us(args.start) // 1000,
        sample_every=args.sample_every,
        warmup=args.warmup,
        activity=args.activity,
        max_streams=SourceSettings().max_streams_per_connection,
        publish_delay=args.publish_delay,
        spill=not args.without_spill,
    )
    check_coverage(plan)
    scratch = Path(tempfile.mkdtemp(prefix="recorder-soak-", dir=args.tmp_dir))
    print(
        f"soak: {plan.symbols} symbols, {plan.seconds:,} flushes, scratch {scratch}",
        file=sys.stderr,
    )
    load_before = os.getloadavg()
    try:
        result = Soak(plan, scratch / "data").run()
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    figures = summary(result)
    print(f"## Soak: {plan.symbols} symbols, {plan.seconds / 3600:g} simulated hours\n")
    print("\n".join(headline_table(figures, result)))
    print("\n### Seal episodes\n")
    print("\n".join(seal_table(result)))
    load_after = os.getloadavg()
    print(
        f"\nLoad average (1 min) before / after the run: {load_before[0]:.2f} / "
        f"{load_after[0]:.2f} on {os.cpu_count()} CPUs."
    )
    if args.json is not None:
        document = {
            "machine": machine(),
            "plan": dataclasses.asdict(plan),
            "start_utc": format_utc_ms(plan.start_ms),
            "summary": figures,
            "seals": [dataclasses.asdict(seal) for seal in result.seals],
            "samples": [dataclasses.asdict(sample) for sample in result.samples],
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average_before": load_before,
            "load_average_after": load_after,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
