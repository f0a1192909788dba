"""A recorded dataset built on disk for the report tests, as the recorder itself writes it.

Sealed data files (through the recorder's own schema and Parquet options), gap log records and
the events and gaps they hold, with the constants the tests share.
"""

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.clock import event_date
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.log import GapLog
from recorder.gaps.resolutions import Resolution, append_resolutions
from recorder.gaps.state import write_state
from recorder.model import MiniTicker
from recorder.storage.schema import (
    FIRST_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SOURCE_STREAM,
    build_wal_batch,
    data_columns,
    parquet_options,
    with_source,
)

BTC = "BTCUSDT"
ETH = "ETHUSDT"
MINUTE_MS = 60_000
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
NOW = T0 + 3_600_000  # the checks run at 11:00


def ticker(symbol: str, event_time: int) -> MiniTicker:
    """Return an event of ``symbol`` at ``event_time`` (ms), received a microsecond later."""
    return MiniTicker(symbol, event_time, "1.5", "1", "2", "0.5", "10", "15", event_time * 1000)


def write_data_file(
    root: Path,
    symbol: str,
    event_times: Sequence[int],
    *,
    day: dt.date | None = None,
    name: str = "part-1.parquet",
    metadata_symbol: str | None = None,
    metadata_day: dt.date | None = None,
    version: int = SCHEMA_VERSION,
    source: str = SOURCE_STREAM,
) -> Path:
    """Write a sealed file as the writer does; rows in the order given (sort them yourself).

    ``version`` 1 writes a file as recorders before the ``source`` column did; ``source`` is
    every row's ``source`` otherwise (``backfill`` for rows as recorder backfill writes them).
    """
    day = day or event_date(event_times[0])
    directory = root / f"date={day.isoformat()}" / f"symbol={symbol}"
    directory.mkdir(parents=True, exist_ok=True)
    options = parquet_options(metadata_day or day, metadata_symbol or symbol, version)
    batch = data_columns(build_wal_batch([ticker(symbol, e) for e in event_times]))
    table = pa.Table.from_batches([batch])
    if version != FIRST_SCHEMA_VERSION:
        table = with_source(table, source)
    table = table.replace_schema_metadata(options.schema.metadata)
    path = directory / name
    pq.write_table(table, path, **options.write_kwargs)
    return path


def log_gaps(root: Path, *gaps: Gap, instance_id: str = "host-a") -> None:
    """Append ``gaps`` to the gap log of ``instance_id``, durably."""
    log = GapLog(root, instance_id)
    log.append(gaps)
    log.flush()


def every(start_ms: int, end_ms: int, step_ms: int = 2000) -> list[int]:
    """Return the event times from ``start_ms`` to before ``end_ms``, ``step_ms`` apart."""
    return list(range(start_ms, end_ms, step_ms))


def gap(symbol: str, from_ms: int, to_ms: int, missed: int, cause: GapCause) -> Gap:
    """Return a gap detected at ``to_ms`` on connection ``0.1``, with no instance id."""
    return Gap(symbol, from_ms, to_ms, missed, cause, to_ms * 1000, "0.1")


def healthy_state(root: Path) -> Path:
    """A state file of instance ``host-a`` recording BTC and ETH, both fresh at :data:`NOW`."""
    write_state(root, "host-a", {BTC: NOW - 2000, ETH: NOW - 30_000}, [BTC, ETH])
    return root


# -- a root for the coverage report ----------------------------------------------------------

XRP = "XRPUSDT"
HOUR_MS = 3_600_000
REPORT_SINCE = T0
"""Window of :func:`coverage_root`: 10:00 to 13:00, three whole hours."""
REPORT_UNTIL = T0 + 3 * HOUR_MS
BTC_GAP = gap(BTC, T0 + 30 * MINUTE_MS - 2000, T0 + 40 * MINUTE_MS, 300, GapCause.DISCONNECT)
"""BTC's disconnect at 10:30, logged by two instances and resolved by a backfill of 10 rows."""
ETH_GAP = gap(ETH, T0 + 115 * MINUTE_MS - 2000, T0 + 125 * MINUTE_MS, 300, GapCause.STALL)
"""ETH's stall across 12:00 (150 missed updates on each side), open."""


def coverage_root(root: Path) -> Path:
    """Build three symbols over :data:`REPORT_SINCE` to :data:`REPORT_UNTIL`, every 2 s.

    * BTC from 10:00 to 13:00 but for :data:`BTC_GAP` (10:30 to 10:40), which 10 backfilled
      rows (one a minute) and a resolution record fill: 1,500 + 1,800 + 1,800 rows received.
    * ETH listed at 11:30, then :data:`ETH_GAP` (11:55 to 12:05), open: 750 + 1,650 rows.
    * XRP from 12:00 to 12:10 only, in a file written before ``source`` existed: 300 rows.
    """
    gap_start, gap_end = BTC_GAP.from_ms + 2000, BTC_GAP.to_ms
    write_data_file(root, BTC, every(T0, gap_start) + every(gap_end, REPORT_UNTIL))
    write_data_file(
        root,
        BTC,
        every(gap_start, gap_end, MINUTE_MS),
        name="backfill-1.parquet",
        source="backfill",
    )
    eth_start = T0 + 90 * MINUTE_MS
    write_data_file(root, ETH, every(eth_start, ETH_GAP.from_ms + 2000))
    write_data_file(root, ETH, every(ETH_GAP.to_ms, REPORT_UNTIL), name="part-2.parquet")
    write_data_file(root, XRP, every(T0 + 2 * HOUR_MS, T0 + 130 * MINUTE_MS), version=1)
    log_gaps(root, BTC_GAP, ETH_GAP)
    log_gaps(root, BTC_GAP, instance_id="host-b")
    resolution = Resolution(BTC_GAP.key, 10, "backfill", REPORT_UNTIL * 1000, "backfill")
    append_resolutions(root, "backfill", [resolution])
    return root
