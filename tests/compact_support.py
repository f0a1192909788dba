"""Datasets for the compaction tests: recorded by the real writer, read back as a reader would.

Each instance records its flushes with :class:`recorder.storage.writer.DatasetWriter`, one
sealed part per partition per flush, so a partition holds as many parts as a recorder leaves.
"""

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from recorder.clock import ManualClock, day_start_ms
from recorder.model import MiniTicker
from recorder.storage.compact.publish import CompactStep
from recorder.storage.compact.report import CompactReport
from recorder.storage.compact.run import compact
from recorder.storage.paths import PartitionKey
from recorder.storage.schema import DATA_SCHEMA
from recorder.storage.writer import DatasetWriter

DAY = dt.date(2024, 5, 1)
NEXT_DAY = DAY + dt.timedelta(days=1)
DAY_MS = day_start_ms(DAY)
GRACE_MS = 10_000
SYMBOLS = ("BTCUSDT", "币安人生USDT")

Row = tuple[Any, ...]
"""(date, symbol, event_time ms, close, open, high, low, volume, quote_volume, receive_time,
pair, contract_type), as a reader sees it."""


# -- building datasets with the real writer ---------------------------------------------------


def ticker(
    symbol: str, event_time: int, *, close: str | None = None, received_late_by_us: int = 0
) -> MiniTicker:
    return MiniTicker(
        symbol=symbol,
        event_time=event_time,
        close=close if close is not None else f"{event_time % 100_000}.12345678",
        open="1.10",
        high="2",
        low="0.000000001",
        volume="6878775288",
        quote_volume="15.125",
        receive_time=event_time * 1000 + 500 + received_late_by_us,
        pair=None if symbol == SYMBOLS[1] else f"{symbol.removesuffix('USDT')}USDT",
        contract_type=None if symbol == SYMBOLS[1] else 1,
    )


def record(
    root: Path, instance_id: str, flushes: Sequence[Sequence[MiniTicker]], wall_us: int
) -> None:
    """Record ``flushes`` as ``instance_id`` does: one sealed part per partition per flush."""
    clock = ManualClock(monotonic=1.0, wall_us=wall_us)
    writer = DatasetWriter(
        root,
        instance_id=instance_id,
        max_file_age=60.0,
        max_file_bytes=1 << 30,
        day_grace_ms=GRACE_MS,
        clock=clock,
    )
    writer.open()
    for events in flushes:
        assert writer.write_ahead(list(events)) == []
        clock.advance(61.0)  # a segment rotation seals every open partition
        writer.seal_due()
    writer.close()


def redundant_pair(root: Path, day_ms: int = DAY_MS) -> None:
    """Two instances record the same symbols; alpha misses some events, beta others.

    alpha: three flushes, missing every 7th event; beta: two flushes, missing every 5th,
    receiving each event 3 ms later than alpha.
    """
    times = [day_ms + 3_600_000 + i * 2000 for i in range(30)]
    alpha = [
        [
            ticker(symbol, t)
            for t in times[start : start + 10]
            for symbol in SYMBOLS
            if (t // 2000) % 7
        ]
        for start in (0, 10, 20)
    ]
    beta = [
        [
            ticker(symbol, t, received_late_by_us=3000)
            for t in times[start : start + 15]
            for symbol in SYMBOLS
            if (t // 2000) % 5
        ]
        for start in (0, 15)
    ]
    record(root, "alpha", alpha, wall_us=(day_ms + 7_200_000) * 1000)
    record(root, "beta", beta, wall_us=(day_ms + 7_200_000) * 1000)


def read_rows(root: Path) -> Counter[Row]:
    """Every row, as pyarrow's dataset discovery (which skips '.' and '_' names) reads it."""
    if not any(root.glob("date=*/symbol=*/*.parquet")):
        return Counter()
    table = ds.dataset(root, partitioning="hive", format="parquet").to_table()
    names = ["date", "symbol", *DATA_SCHEMA.names]
    return Counter(
        tuple(
            str(value) if name == "date" else value for name, value in zip(names, row, strict=True)
        )
        for row in zip(*(table[name].to_pylist() for name in names), strict=True)
    )


def distinct_events(rows: Counter[Row]) -> dict[tuple[Any, ...], Row]:
    """The row each event should keep after compaction: the earliest received."""
    kept: dict[tuple[Any, ...], Row] = {}
    receive_index = 2 + DATA_SCHEMA.names.index("receive_time")
    for row in sorted(rows, key=lambda row: row[receive_index]):
        kept.setdefault((row[0], row[1], row[2]), row)
    return kept


def live_files(root: Path, day: dt.date = DAY) -> dict[str, list[str]]:
    return {
        directory.name: sorted(path.name for path in directory.glob("*.parquet"))
        for directory in sorted((root / f"date={day.isoformat()}").glob("symbol=*"))
    }


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def clock_at(day: dt.date, after_midnight_ms: int) -> ManualClock:
    return ManualClock(wall_us=(day_start_ms(day) + after_midnight_ms) * 1000)


def run_compact(root: Path, **kwargs: Any) -> CompactReport:
    """Compact ``root`` an hour into :data:`NEXT_DAY` with the test grace, unless told."""
    kwargs.setdefault("clock", clock_at(NEXT_DAY, 3_600_000))
    kwargs.setdefault("day_grace_ms", GRACE_MS)
    return compact(root, **kwargs)


def redundant_dataset(tmp_path: Path) -> Path:
    """A root under ``tmp_path`` holding :func:`redundant_pair` of :data:`DAY`."""
    root = tmp_path / "data"
    redundant_pair(root)
    return root


# -- crashes ------------------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for kill -9: no except clause of the code under test handles it."""


def crash_at(step: CompactStep, occurrence: int = 1) -> Callable[[CompactStep, PartitionKey], None]:
    """A step hook that raises :class:`Crash` at the ``occurrence``-th ``step`` of a run."""
    seen = 0

    def hook(current: CompactStep, key: PartitionKey) -> None:
        nonlocal seen
        if current is step:
            seen += 1
            if seen == occurrence:
                raise Crash(f"{step} #{occurrence}")

    return hook
