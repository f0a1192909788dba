"""Test support for the dataset writer's unit tests: events, crash copies, the dataset read back.

Shared by the tests of ``tests/unit/storage`` that drive a
:class:`~recorder.storage.writer.DatasetWriter`; its ``clock`` and ``make_writer`` fixtures are
in ``tests/unit/storage/conftest.py``.
"""

import datetime as dt
import shutil
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recorder.clock import MS_PER_DAY, day_start_ms
from recorder.model import MiniTicker
from recorder.storage.paths import parse_data_file_name, partition_dir
from recorder.storage.writer import DatasetWriter

DAY = dt.date(2026, 3, 27)
DAY_MS = day_start_ms(DAY)
NEXT_DAY_MS = DAY_MS + MS_PER_DAY
GRACE_MS = 5_000
MAX_AGE = 3600.0
SYMBOLS = ("BTCUSDT", "币安人生USDT", "BTCUSDT_260327")

Row = tuple[str, int, Decimal]
WriterFactory = Callable[..., DatasetWriter]
"""``make_writer(root, **overrides)``: a writer with the test defaults, closed after the test."""


def ticker(symbol: str, event_time: int, close: str = "1.5") -> MiniTicker:
    return MiniTicker(
        symbol, event_time, close, "1", "2", "0.5", "10.25", "15.125", event_time * 1000 + 7
    )


def events_for(
    start_ms: int, count: int, symbols: tuple[str, ...] = SYMBOLS, step_ms: int = 1000
) -> list[MiniTicker]:
    return [
        ticker(symbol, start_ms + i * step_ms, f"{i}.{i:08d}")
        for i in range(count)
        for symbol in symbols
    ]


def rows_of(events: list[MiniTicker]) -> Counter[Row]:
    return Counter((e.symbol, e.event_time, Decimal(e.close)) for e in events)


def data_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def dataset_rows(root: Path) -> Counter[Row]:
    if not data_files(root):
        return Counter()
    table = ds.dataset(root, partitioning="hive").to_table()
    return Counter(
        (str(symbol), round(event_time.timestamp() * 1000), close)
        for symbol, event_time, close in zip(
            table["symbol"].to_pylist(),
            table["event_time"].to_pylist(),
            table["close"].to_pylist(),
            strict=True,
        )
    )


def assert_layout(root: Path) -> None:
    """Only sealed, sorted data files end in .parquet, and only inside date=/symbol= dirs."""
    for path in root.rglob("*"):
        if not path.name.endswith(".parquet"):
            continue
        relative = path.relative_to(root).parts
        assert len(relative) == 3, path
        assert relative[0].startswith("date="), path
        assert relative[1].startswith("symbol="), path
        assert parse_data_file_name(path.name) is not None, path
        event_times = pq.read_table(path, columns=["event_time"])["event_time"].to_pylist()
        assert event_times == sorted(event_times), path


def segments(root: Path, instance_id: str = "alpha") -> list[Path]:
    return sorted((root / "_wal" / instance_id).glob("*.wal"))


def crash_copy(root: Path, destination: Path) -> Path:
    """The files as a crash at this instant would leave them (every append was fsynced)."""
    shutil.copytree(root, destination, symlinks=True)
    return destination


def crashed_after_writing(
    make_writer: WriterFactory, tmp_path: Path, events: list[MiniTicker], instance_id: str = "alpha"
) -> Path:
    """A root as a crash leaves it after ``instance_id`` logged ``events`` (nothing sealed)."""
    writer = make_writer(tmp_path / "live", instance_id=instance_id)
    writer.open()
    writer.write_ahead(events)
    return crash_copy(writer.root, tmp_path / "crashed")


def block_partition(root: Path, symbol: str) -> Path:
    """Put a file where ``symbol``'s directory of :data:`DAY` goes: it cannot be written."""
    blocked = partition_dir(root, DAY, symbol)
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way")
    return blocked
