"""Measure the bytes per event of hourly data files under candidate Parquet write options.

Method:

1. **Data.** The simulator's own market generator
   (:class:`recorder.simulate.market.MarketGenerator`, seed 7) with 300 symbols ``SYM0001USDT``
   to ``SYM0300USDT``: the nine price profiles dealt round-robin, half of the symbols carrying
   ``ps`` and ``st``. It runs at Binance's real pace, the simulator's defaults: a tick every
   2 s of ``E`` with up to 150 ms of jitter, and each symbol sends only when its ticker changed
   (the generator's own draw, 0.9 to 1.0 per symbol and tick). An hour is 1,800 ticks, so each
   symbol's file holds up to 1,800 rows. Each event is framed as the combined stream sends it
   and decoded by :func:`recorder.ingest.decode.decode_frame`, so the rows are the objects the
   service hands to the writer. ``receive_time`` is ``E`` plus a latency drawn uniformly from
   5 to 100 ms, to the microsecond (seeded): the simulator has no network, and the entropy of
   this column depends on that model.
2. **Files.** One table per symbol, built as the writer's publisher builds it:
   :func:`~recorder.storage.schema.build_wal_batch`, :func:`~recorder.storage.schema.data_columns`,
   ``Table.from_batches(..., schema=DATA_SCHEMA)``, sorted by
   :data:`~recorder.storage.schema.ROW_ORDER`, with the partition's key-value metadata. (The
   writer's tables arrive in one chunk per flush; pyarrow writes the same bytes either way.)
   Each candidate writes the 300 files through
   :func:`~recorder.storage.schema.write_parquet_file` (flushed and fsynced, as a seal does)
   into its own Hive-partitioned root.
3. **Measures.** Bytes per event: the total size of the 300 files divided by their rows.
   Write: ``pyarrow.parquet.write_table`` of every table into memory, so that the figure is the
   encoding and compression the candidates differ in (the file write and the fsync a seal adds
   are the same for all, and the fsync's latency would swamp the difference); its CPU time
   (``time.process_time``, every thread) per event, and its wall time for all 300 files, about
   what an hourly seal of 300 symbols adds to the storage thread. Read: CPU time per event of
   ``pyarrow.parquet.read_table`` on every file, from the page cache. Timings are the median of
   ``--rounds`` rounds, each preceded by a garbage collection.
4. **Exactness.** Each candidate's root is read by the four readers of the SPEC
   (``pandas.read_parquet(root)``, DuckDB ``read_parquet('<root>/**/*.parquet',
   hive_partitioning=true)``, ``polars.scan_parquet(..., hive_partitioning=True)`` and
   ``pyarrow.dataset.dataset(root, partitioning="hive")``). Every value of every column must
   equal the table written, the decimals as decimals (a reader that returns floats fails), and
   the file's Parquet type of each price and volume must stay ``decimal(38, 18)``. A candidate
   that pyarrow refuses to write, or that a reader cannot read exactly, is reported with the
   reason and is not eligible.

The candidates change one thing at a time against the options used before this measurement
(zstd at Arrow's default level, a dictionary for ``pair`` only, statistics on), then combine
the changes that pay; the last row is what :func:`recorder.storage.schema.parquet_options`
returns now. A second table splits the bytes by column for the previous and the shipped
options.

Usage::

    .venv/bin/python scripts/file_size.py [--symbols N] [--rounds N] [--tmp-dir DIR]
        [--json FILE]

It prints Markdown tables to stdout and progress to stderr; ``docs/performance.md`` ("Bytes
per event on disk") has the figures and the choice.
"""

import argparse
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from benchmark import number  # scripts/ is on sys.path when a script runs

from recorder.clock import event_date
from recorder.ingest.decode import decode_frame
from recorder.model import MiniTicker
from recorder.simulate.config import SimulatorConfig
from recorder.simulate.market import MarketGenerator, encode_json
from recorder.storage.schema import (
    DATA_COLUMNS,
    DATA_SCHEMA,
    DECIMAL_COLUMNS,
    DECIMAL_TYPE,
    MAX_ROW_GROUP_ROWS,
    ROW_ORDER,
    ParquetOptions,
    build_wal_batch,
    data_columns,
    parquet_options,
    write_parquet_file,
)
from recorder.symbols import stream_name

SEED = 7
START_MS = 1_768_464_000_000
"""2026-01-15T08:00:00Z: ``E`` of the first tick; the hour stays within one UTC day."""
TICKS_PER_HOUR = 1_800
"""One tick every 2 s (the simulator's default ``interval_ms``)."""
LATENCY_US = (5_000, 100_000)
"""Range of ``receive_time - E``, in microseconds."""
SYMBOL_COLUMN = "symbol"
SORT_KEYS = [(SYMBOL_COLUMN, "ascending"), *ROW_ORDER]
TIMESTAMPS = ("event_time", "receive_time")

PREVIOUS_WRITE_KWARGS: Mapping[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["pair"],
    "write_statistics": True,
    "row_group_size": MAX_ROW_GROUP_ROWS,
}
"""What :func:`~recorder.storage.schema.parquet_options` returned before this measurement."""


# ---------------------------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    """One set of write options.

    Attributes:
        name: a short label for the table.
        change: the keyword arguments that differ from :data:`PREVIOUS_WRITE_KWARGS`.
        shipped: the options are :func:`~recorder.storage.schema.parquet_options`'s own.
    """

    name: str
    change: Mapping[str, Any] = field(default_factory=dict)
    shipped: bool = False

    def write_kwargs(self, date: dt.date, symbol: str) -> dict[str, Any]:
        """Return the keyword arguments of :func:`pyarrow.parquet.write_table`."""
        if self.shipped:
            return dict(parquet_options(date, symbol).write_kwargs)
        return {**PREVIOUS_WRITE_KWARGS, **self.change}


def _encode(columns: Sequence[str], encoding: str) -> dict[str, str]:
    return dict.fromkeys(columns, encoding)


DELTA_TIMES = _encode(TIMESTAMPS, "DELTA_BINARY_PACKED")
VOLUMES = ("volume", "quote_volume")
WINDOW_PRICES = ("open", "high", "low")

CANDIDATES: tuple[Candidate, ...] = (
    Candidate("previous options (baseline)"),
    Candidate("zstd level 1", {"compression_level": 1}),
    Candidate("zstd level 3", {"compression_level": 3}),
    Candidate("zstd level 9", {"compression_level": 9}),
    Candidate("zstd level 19", {"compression_level": 19}),
    Candidate("timestamps DELTA_BINARY_PACKED", {"column_encoding": DELTA_TIMES}),
    Candidate(
        "timestamps BYTE_STREAM_SPLIT",
        {"column_encoding": _encode(TIMESTAMPS, "BYTE_STREAM_SPLIT")},
    ),
    Candidate(
        "decimals BYTE_STREAM_SPLIT",
        {"column_encoding": _encode(DECIMAL_COLUMNS, "BYTE_STREAM_SPLIT")},
    ),
    Candidate(
        "decimals DELTA_BYTE_ARRAY",
        {"column_encoding": _encode(DECIMAL_COLUMNS, "DELTA_BYTE_ARRAY")},
    ),
    Candidate("dictionary for open, high, low", {"use_dictionary": ["pair", *WINDOW_PRICES]}),
    Candidate("dictionary for all six decimals", {"use_dictionary": ["pair", *DECIMAL_COLUMNS]}),
    Candidate("store_decimal_as_integer", {"store_decimal_as_integer": True}),
    Candidate("data_page_size 8 KiB", {"data_page_size": 8 * 1024}),
    Candidate(
        "timestamps DELTA + zstd 9",
        {"column_encoding": DELTA_TIMES, "compression_level": 9},
    ),
    Candidate(
        "timestamps DELTA + zstd 19",
        {"column_encoding": DELTA_TIMES, "compression_level": 19},
    ),
    Candidate(
        "timestamps DELTA + zstd 9 + dictionary for open, high, low",
        {
            "column_encoding": DELTA_TIMES,
            "compression_level": 9,
            "use_dictionary": ["pair", *WINDOW_PRICES],
        },
    ),
    Candidate(
        "timestamps DELTA + zstd 9, no Arrow schema (drops the column docs)",
        {"column_encoding": DELTA_TIMES, "compression_level": 9, "store_schema": False},
    ),
    Candidate(
        "timestamps DELTA + zstd 9, statistics on timestamps only",
        {
            "column_encoding": DELTA_TIMES,
            "compression_level": 9,
            "write_statistics": list(TIMESTAMPS),
        },
    ),
    Candidate(
        "timestamps DELTA + volumes BYTE_STREAM_SPLIT + zstd 19",
        {
            "column_encoding": {**DELTA_TIMES, **_encode(VOLUMES, "BYTE_STREAM_SPLIT")},
            "compression_level": 19,
        },
    ),
    Candidate(
        "smallest readable: timestamps DELTA + zstd 19, no Arrow schema, statistics on "
        "timestamps only",
        {
            "column_encoding": DELTA_TIMES,
            "compression_level": 19,
            "store_schema": False,
            "write_statistics": list(TIMESTAMPS),
        },
    ),
    Candidate("shipped: `parquet_options()`", shipped=True),
)


# ---------------------------------------------------------------------------------------------
# The hour of data


def symbol_names(count: int) -> tuple[str, ...]:
    """Return ``count`` generated contract names: ``SYM0001USDT``, ``SYM0002USDT``..."""
    return tuple(f"SYM{number:04d}USDT" for number in range(1, count + 1))


def market_hour(symbols: tuple[str, ...], ticks: int) -> dict[str, list[MiniTicker]]:
    """Generate ``ticks`` ticks of the market at the real pace; return each symbol's events.

    Raises:
        RuntimeError: a frame did not decode into exactly one event.
    """
    generator = MarketGenerator(SimulatorConfig(symbols=symbols, seed=SEED), START_MS)
    latency = random.Random(f"{SEED}:latency")  # noqa: S311 - simulation, not security
    subscribed = frozenset(symbols)
    events: dict[str, list[MiniTicker]] = {symbol: [] for symbol in symbols}
    for _ in range(ticks):
        for event in generator.step().events:
            frame = f'{{"stream":{encode_json(stream_name(event.symbol))},"data":'
            frame += f"{event.payload_json}}}"
            receive_time = event.event_time * 1000 + latency.randint(*LATENCY_US)
            decoded = decode_frame(frame, receive_time=receive_time, subscribed=subscribed)
            if len(decoded.events) != 1 or decoded.rejections:
                raise RuntimeError(f"frame did not decode into one event: {frame}")
            events[event.symbol].extend(decoded.events)
    return events


def hourly_table(events: Sequence[MiniTicker], date: dt.date, symbol: str) -> pa.Table:
    """Build one partition's table as the writer's publisher does before writing it."""
    batch = data_columns(build_wal_batch(events))
    return (
        pa.Table.from_batches([batch], schema=DATA_SCHEMA)
        .sort_by(list(ROW_ORDER))
        .replace_schema_metadata(parquet_options(date, symbol).schema.metadata)
    )


@dataclass(frozen=True, slots=True)
class Partition:
    """One symbol's hourly file to be written.

    Attributes:
        date: its partition's date.
        symbol: its partition's symbol.
        table: its rows, sorted, with the file's key-value metadata.
    """

    date: dt.date
    symbol: str
    table: pa.Table

    def path(self, root: Path) -> Path:
        """Return where the file lies under ``root``."""
        return root / f"date={self.date.isoformat()}" / f"symbol={self.symbol}" / "hour.parquet"


def build_partitions(symbols: tuple[str, ...], ticks: int) -> list[Partition]:
    """Return the hourly tables of ``symbols`` (symbols that sent nothing have none)."""
    partitions = []
    for symbol, events in market_hour(symbols, ticks).items():
        if events:
            date = event_date(events[0].event_time)
            partitions.append(Partition(date, symbol, hourly_table(events, date, symbol)))
    return partitions


def expected_rows(partitions: Sequence[Partition]) -> pa.Table:
    """Return every row with its ``symbol``, in reader-comparison order."""
    tables = [
        partition.table.replace_schema_metadata(None).append_column(
            SYMBOL_COLUMN, pa.array([partition.symbol] * partition.table.num_rows, pa.string())
        )
        for partition in partitions
    ]
    return pa.concat_tables(tables).sort_by(SORT_KEYS).combine_chunks()


# ---------------------------------------------------------------------------------------------
# Reading back


def _read_pandas(root: Path) -> pa.Table:
    frame = pd.read_parquet(root)
    columns = {name: pa.array(frame[name].tolist()) for name in DECIMAL_COLUMNS}
    others = [name for name in [*DATA_COLUMNS, SYMBOL_COLUMN] if name not in columns]
    table = pa.Table.from_pandas(frame[others], preserve_index=False)
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table


def _read_duckdb(root: Path) -> pa.Table:
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        query = "SELECT * FROM read_parquet($glob, hive_partitioning=true)"
        relation = connection.sql(query, params={"glob": f"{root}/**/*.parquet"})
        return pa.table(relation.arrow())
    finally:
        connection.close()


def _read_polars(root: Path) -> pa.Table:
    frame = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
    return frame.to_arrow()


def _read_pyarrow(root: Path) -> pa.Table:
    return ds.dataset(root, partitioning="hive").to_table()


READERS: dict[str, Callable[[Path], pa.Table]] = {
    "pandas": _read_pandas,
    "duckdb": _read_duckdb,
    "polars": _read_polars,
    "pyarrow": _read_pyarrow,
}


def _difference(actual: pa.Table, expected: pa.Table) -> str | None:
    """Say how ``actual`` differs from ``expected`` in the compared columns, or ``None``."""
    if actual.num_rows != expected.num_rows:
        return f"{actual.num_rows} rows, expected {expected.num_rows}"
    names = [*DATA_COLUMNS, SYMBOL_COLUMN]
    missing = [name for name in names if name not in actual.column_names]
    if missing:
        return f"no column {missing[0]!r}"
    for name in DECIMAL_COLUMNS:
        if not pa.types.is_decimal(actual.schema.field(name).type):
            return f"{name} read as {actual.schema.field(name).type}, not a decimal"
    try:
        # A safe cast raises rather than drop digits or sub-millisecond time.
        cast = pa.table(
            {name: actual.column(name).cast(expected.schema.field(name).type) for name in names}
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return f"cast: {exc}"
    ordered = cast.sort_by(SORT_KEYS)
    for name in names:
        if not ordered.column(name).equals(expected.column(name)):
            return f"{name} differs"
    return None


def decimal_types(path: Path) -> set[str]:
    """Return the Parquet types of the decimal columns of the file at ``path``."""
    schema = pq.ParquetFile(path).schema
    found = set()
    for index in range(len(schema)):
        column = schema.column(index)
        if column.name in DECIMAL_COLUMNS:
            found.add(f"{column.physical_type} {column.logical_type}")
    return found


def check_readers(root: Path, expected: pa.Table, sample: Path) -> str:
    """Read ``root`` with the four readers; return ``"yes"`` or why a value is not exact."""
    wanted = {
        f"FIXED_LEN_BYTE_ARRAY Decimal(precision={DECIMAL_TYPE.precision}, "
        f"scale={DECIMAL_TYPE.scale})"
    }
    found = decimal_types(sample)
    if found != wanted:
        return f"no: the decimals are stored as {', '.join(sorted(found))}"
    for name, read in READERS.items():
        try:
            table = read(root)
        except Exception as exc:  # noqa: BLE001 - any reader failure is the finding
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"no: {name} fails: {type(exc).__name__}: {first_line}"
        difference = _difference(table, expected)
        if difference is not None:
            return f"no: {name}: {difference}"
    return "yes"


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass(slots=True)
class Result:
    """What one candidate measured.

    Attributes:
        name: the candidate's label.
        write_kwargs: the options of the first file (they do not depend on the partition).
        rows: rows written.
        files: files written.
        total_bytes: their total size.
        column_bytes: per column, compressed bytes of its column chunks (page headers included);
            ``footer and header`` is the rest of the files.
        write_cpu_s: median CPU seconds of encoding every file into memory.
        write_wall_s: median wall seconds of encoding every file into memory.
        read_cpu_s: median CPU seconds of reading every file back.
        exact: ``"yes"`` or why the four readers do not return every value exactly.
        refused: why pyarrow refused to write, or ``None``.
    """

    name: str
    write_kwargs: dict[str, Any]
    rows: int = 0
    files: int = 0
    total_bytes: int = 0
    column_bytes: dict[str, int] = field(default_factory=dict)
    write_cpu_s: float = float("nan")
    write_wall_s: float = float("nan")
    read_cpu_s: float = float("nan")
    exact: str = ""
    refused: str | None = None

    @property
    def bytes_per_event(self) -> float:
        """Total file bytes divided by rows."""
        return self.total_bytes / self.rows if self.rows else float("nan")


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def _column_bytes(paths: Sequence[Path]) -> dict[str, int]:
    sizes = dict.fromkeys([*DATA_COLUMNS, "footer and header"], 0)
    for path in paths:
        metadata = pq.ParquetFile(path).metadata
        in_columns = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                column = row_group.column(index)
                sizes[column.path_in_schema] += column.total_compressed_size
                in_columns += column.total_compressed_size
        sizes["footer and header"] += path.stat().st_size - in_columns
    return sizes


def measure_candidate(
    candidate: Candidate,
    partitions: Sequence[Partition],
    expected: pa.Table,
    root: Path,
    rounds: int,
) -> Result:
    """Write every partition under ``root`` with ``candidate``'s options and measure it."""
    files = [
        (
            partition.path(root),
            partition.table,
            ParquetOptions(
                partition.table.schema, candidate.write_kwargs(partition.date, partition.symbol)
            ),
        )
        for partition in partitions
    ]
    result = Result(candidate.name, dict(files[0][2].write_kwargs))
    for path, _, _ in files:
        path.parent.mkdir(parents=True, exist_ok=True)

    def encode_all() -> None:
        for _, table, options in files:
            pq.write_table(table, pa.BufferOutputStream(), **options.write_kwargs)

    def read_all() -> None:
        for path, _, _ in files:
            pq.read_table(path)

    try:
        for path, table, options in files:
            write_parquet_file(path, table, options)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        result.refused = f"{type(exc).__name__}: {exc}"
        return result
    writes = [_timed(encode_all) for _ in range(rounds)]
    reads = [_timed(read_all) for _ in range(rounds)]
    paths = [path for path, _, _ in files]
    result.rows = sum(table.num_rows for _, table, _ in files)
    result.files = len(files)
    result.total_bytes = sum(path.stat().st_size for path in paths)
    result.column_bytes = _column_bytes(paths)
    result.write_cpu_s = statistics.median(cpu for cpu, _ in writes)
    result.write_wall_s = statistics.median(wall for _, wall in writes)
    result.read_cpu_s = statistics.median(cpu for cpu, _ in reads)
    result.exact = check_readers(root, expected, paths[0])
    return result


# ---------------------------------------------------------------------------------------------
# Reporting


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def candidates_table(results: Sequence[Result]) -> str:
    """The table of every candidate against the baseline (the first result)."""
    baseline = results[0]
    rows = []
    for result in results:
        if result.refused is not None:
            rows.append([result.name, "n/a", "", "", "", "", f"pyarrow refuses: {result.refused}"])
            continue
        per_event = result.bytes_per_event
        rows.append(
            [
                result.name,
                number(per_event),
                f"{(per_event / baseline.bytes_per_event - 1) * 100:+.1f} %",
                number(result.write_cpu_s * 1e6 / result.rows),
                number(result.write_wall_s, 2),
                number(result.read_cpu_s * 1e6 / result.rows),
                result.exact,
            ]
        )
    header = (
        "candidate",
        "bytes per event",
        "vs baseline",
        "write CPU µs per event",
        "write wall s, all files",
        "read CPU µs per event",
        "four readers exact",
    )
    return markdown(header, rows)


def columns_table(results: Sequence[Result]) -> str:
    """Bytes per event by column for the baseline and the shipped options."""
    shown = [results[0], results[-1]]
    names = list(shown[0].column_bytes)
    rows = [
        [f"`{name}`", *(number(result.column_bytes[name] / result.rows) for result in shown)]
        for name in names
    ]
    rows.append(["total", *(number(result.bytes_per_event) for result in shown)])
    return markdown(["column", *(result.name for result in shown)], rows)


def describe_machine() -> str:
    """One line about this machine and the software measured."""
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("pyarrow", "pandas", "duckdb", "polars")
    )
    return (
        f"{len(os.sched_getaffinity(0))} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {versions}"
    )


def progress(message: str) -> None:
    """Tell the operator what is running; on stderr, so stdout stays the report."""
    print(f"file_size: {message}", file=sys.stderr, flush=True)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=300, help="symbols (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds per candidate (default 3)"
    )
    parser.add_argument(
        "--tmp-dir", type=Path, metavar="DIR", help="scratch directory (default: the system's)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the raw results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the hour, measure every candidate, print the tables."""
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    progress(f"generating {TICKS_PER_HOUR} ticks of {arguments.symbols} symbols")
    partitions = build_partitions(symbol_names(arguments.symbols), TICKS_PER_HOUR)
    expected = expected_rows(partitions)
    results = []
    with tempfile.TemporaryDirectory(prefix="recorder-file-size-", dir=arguments.tmp_dir) as tmp:
        for number_, candidate in enumerate(CANDIDATES):
            progress(f"{candidate.name}")
            root = Path(tmp) / f"candidate-{number_:02d}"
            results.append(
                measure_candidate(candidate, partitions, expected, root, arguments.rounds)
            )
    rows = expected.num_rows
    print(
        f"{len(partitions)} hourly files, {rows:,} events "
        f"({rows / len(partitions):,.0f} per file); {describe_machine()}\n"
    )
    print(candidates_table(results))
    print()
    print(columns_table(results))
    progress(f"done in {time.perf_counter() - started:.0f} s")
    if arguments.json is not None:
        document = [
            {**asdict(result), "bytes_per_event": result.bytes_per_event} for result in results
        ]
        arguments.json.write_text(json.dumps(document, indent=2, default=str) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
